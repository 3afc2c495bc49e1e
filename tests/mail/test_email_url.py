"""EMAIL_URL: what it may say, and one clear message naming the variable for what it may not (never the password)."""
from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from loginsvc.mail import smtp


@pytest.mark.parametrize("url, expected", [
    ("smtp://relay.example.com", smtp.Server("relay.example.com", 25)),
    ("smtp://127.0.0.1:2525/", smtp.Server("127.0.0.1", 2525)),
    ("smtp://u%40x:p%2Fw@mx.example.com:587?starttls=1", smtp.Server("mx.example.com", 587, starttls=True,
                                                                     user="u@x", password="p/w")),
    ("smtps://u:pw@mx.example.com", smtp.Server("mx.example.com", 465, implicit_tls=True, user="u", password="pw")),
])
def test_the_three_forms(url: str, expected: smtp.Server) -> None:
    assert smtp.parse(url) == expected


@pytest.mark.parametrize("url, problem", [
    ("http://mx.example.com", "expected smtp://host[:port] or smtps://host[:port]"),
    ("smtp://", "expected smtp://host[:port]"),
    ("smtp://mx.example.com:99999", "the port is not a number from 1 to 65535"),
    ("smtp://mx.example.com/path", "no path or fragment"),
    ("smtp://mx.example.com?tls=1", "unknown or empty option 'tls'"),
    ("smtp://user:s3cret-word@mx.example.com", "credentials over plain smtp://"),
    ("smtps://mx.example.com?starttls=1", "starttls=1 with smtps://"),
    ("smtp://mx.example.com?cafile=/etc/hosts", "cafile= needs TLS"),
    ("smtps://mx.example.com?cafile=/nonexistent/ca.pem", "cafile= names no readable file"),
])
def test_a_bad_url_is_one_message_naming_the_variable_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        smtp.parse(url)
    assert str(refused.value).startswith("EMAIL_URL: ") and problem in str(refused.value)
    assert "s3cret-word" not in str(refused.value) and "\n" not in str(refused.value)


def test_the_password_from_a_file_and_only_with_tls(tmp_path: Any) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("from-a-file\n")
    env = {"EMAIL_URL": "smtps://mailer@mx.example.com", "EMAIL_PASSWORD_FILE": str(secret)}
    assert smtp.configured(env).password == "from-a-file"
    with pytest.raises(ImproperlyConfigured, match="^EMAIL_URL: credentials over plain"):
        smtp.configured({**env, "EMAIL_URL": "smtp://mx.example.com"})
    with pytest.raises(ImproperlyConfigured, match="^EMAIL_PASSWORD_FILE: cannot read it"):
        smtp.configured({**env, "EMAIL_PASSWORD_FILE": str(tmp_path / "missing")})
    with pytest.raises(ImproperlyConfigured, match="^EMAIL_PASSWORD_FILE: set without EMAIL_URL"):
        smtp.configured({"EMAIL_PASSWORD_FILE": str(secret)})
    assert smtp.configured({}) is None


def test_deploy_check_warns_when_production_has_nowhere_to_send_mail(settings: Any) -> None:
    settings.PRODUCTION, settings.EMAIL_SERVER = True, None
    assert [m.id for m in smtp.check_configured()] == ["loginsvc.W030"]
    settings.EMAIL_SERVER = smtp.parse("smtps://mx.example.com")
    assert smtp.check_configured() == []
