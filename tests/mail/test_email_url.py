"""EMAIL_URL: what it may say, and one clear message naming the variable for what it may not (never the password).

The grammar is the router's ALERT_SMTP_URL's too (sharedlib/smtp_url.py): tests/canary/test_alerts_smtp.py
proves the rest of its refusals through that variable."""
from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from loginsvc.mail import smtp
from sharedlib.smtp_url import SmtpServer


@pytest.mark.parametrize("url, expected", [
    ("smtp://relay.example.com", SmtpServer("relay.example.com", 25)),
    ("SMTP://127.0.0.1:2525/", SmtpServer("127.0.0.1", 2525)),
    ("smtp://u%40x:p%2Fw@mx.example.com:587?starttls=1", SmtpServer("mx.example.com", 587, tls="starttls",
                                                                    user="u@x", password="p/w")),
    ("smtps://u:pw@mx.example.com", SmtpServer("mx.example.com", 465, tls="implicit", user="u", password="pw")),
    ("smtp://mx.example.com:587?starttls=yes", SmtpServer("mx.example.com", 587, tls="starttls")),
])
def test_the_three_forms(url: str, expected: SmtpServer) -> None:
    assert smtp.parse(url) == expected


@pytest.mark.parametrize("url, problem", [
    ("http://mx.example.com", "the scheme must be smtp:// or smtps://"),
    ("smtp://", "no host"),
    ("smtp://mx.example.com:99999", "the port is not a number from 1 to 65535"),
    ("smtp://mx.example.com/path", "no path or fragment"),
    ("smtp://mx.example.com#s3cret-word", "no path or fragment"),
    ("smtp://mx.example.com?tls=1", "an unknown option (known: starttls, cafile)"),
    ("smtps://mx.example.com?s3cret-word=1", "an unknown option"),
    ("smtps://mailer:2024?cafile=s3cret-word@mx.example.com", "the cafile= file cannot be loaded"),   # "@" unencoded
    ("smtps://mx.example.com?cafile=%00", "the cafile= file cannot be loaded"),
    ("smtps://user:@mx.example.com", "a user without a password"),
    ("smtps://us%C3%A9r:pw@mx.example.com", "non-ASCII"),
    ("smtps://mx.example.com?cafile=", "cafile= is empty"),
    ("smtp://user:s3cret-word@mx.example.com", "credentials over plain smtp://"),
    ("smtps://user@mx.example.com", "a user without a password: add it (percent-encoded) or set EMAIL_PASSWORD_FILE"),
    ("smtps://mx.example.com?starttls=1", "starttls=1 with smtps://"),
    ("smtp://mx.example.com?cafile=/etc/hosts", "cafile= needs TLS"),
    ("smtps://mx.example.com?cafile=/nonexistent/ca.pem", "the cafile= file cannot be loaded (No such file"),
    (f"smtps://mx.example.com?cafile={__file__}", "the cafile= file cannot be loaded"),   # not PEM
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
        smtp.configured({**env, "EMAIL_URL": "smtp://mailer@mx.example.com"})
    with pytest.raises(ImproperlyConfigured, match="^EMAIL_PASSWORD_FILE: EMAIL_URL has a password too"):
        smtp.configured({**env, "EMAIL_URL": "smtps://mailer:s3cret-word@mx.example.com"})
    with pytest.raises(ImproperlyConfigured, match="^EMAIL_PASSWORD_FILE: EMAIL_URL names no user"):
        smtp.configured({**env, "EMAIL_URL": "smtps://mx.example.com"})
    with pytest.raises(ImproperlyConfigured, match="^EMAIL_PASSWORD_FILE: cannot read"):
        smtp.configured({**env, "EMAIL_PASSWORD_FILE": str(tmp_path / "missing")})
    with pytest.raises(ImproperlyConfigured, match="^EMAIL_PASSWORD_FILE: set without EMAIL_URL"):
        smtp.configured({"EMAIL_PASSWORD_FILE": str(secret)})
    assert smtp.configured({}) is None


def test_deploy_check_warns_when_production_has_nowhere_to_send_mail(settings: Any) -> None:
    settings.PRODUCTION, settings.EMAIL_SERVER = True, None
    assert [m.id for m in smtp.check_configured()] == ["loginsvc.W030"]
    settings.EMAIL_SERVER = smtp.parse("smtps://mx.example.com")
    assert smtp.check_configured() == []


def test_the_server_shown_in_a_log_or_a_traceback_holds_no_password() -> None:
    server = smtp.parse("smtps://mailer:s3cret-word@mx.example.com")
    assert server.password == "s3cret-word" and "s3cret" not in repr(server) and "mailer" in repr(server)
