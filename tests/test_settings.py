"""Production settings: `check --deploy` is clean; a missing or weak key or a bad option stops with one line."""
from __future__ import annotations

import base64
import secrets

import pytest

from loginsvc.sso import keys
from tests import plugin
from tests.support import manage, node_env

STRONG_KEY = secrets.token_urlsafe(64)


def production_env(tmp_path, **extra: str) -> dict[str, str]:
    key_file, mfa_key = tmp_path / "oidc-keys.json", tmp_path / "mfa-key"
    if not key_file.exists():
        key_file.write_text(keys.new_ring_text())
        mfa_key.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    env = node_env(tmp_path, plugin.REDIS.url, LOGINSVC_MODE="production",
                   DJANGO_ALLOWED_HOSTS="login.example.test", DJANGO_SECRET_KEY=STRONG_KEY,
                   LOGINSVC_OIDC_ISSUER="https://login.example.test", LOGINSVC_OIDC_KEY_FILE=str(key_file),
                   LOGINSVC_MFA_KEY_FILE=str(mfa_key), EMAIL_URL="smtps://mx.example.test",
                   LOGINSVC_IMAP_SERVER="imaps://mail.example.test",
                   LOGINSVC_SUBMISSION_SERVER="smtp://mail.example.test:587?starttls=1")
    env.update(extra)
    return env


def test_check_deploy_is_clean_in_production(tmp_path) -> None:
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    without_mail = production_env(tmp_path)
    del without_mail["EMAIL_URL"]
    warned = manage(without_mail, "check", "--deploy", "--fail-level", "WARNING", check=False)
    assert warned.returncode == 1 and "loginsvc.W030" in warned.stderr + warned.stdout


def test_secret_key_may_come_from_a_file(tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(STRONG_KEY + "\n")
    env = production_env(tmp_path, DJANGO_SECRET_KEY_FILE=str(key_file))
    del env["DJANGO_SECRET_KEY"]
    assert manage(env, "check", "--deploy", "--fail-level", "WARNING", check=False).returncode == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY: required in production"),
        ({"DJANGO_SECRET_KEY": "short-key"}, "DJANGO_SECRET_KEY: too weak"),
        ({"DJANGO_SECRET_KEY": "django-insecure-" + "a1b2c3d4e5" * 5}, "DJANGO_SECRET_KEY: too weak"),
        ({"DJANGO_SECRET_KEY": "a" * 60}, "DJANGO_SECRET_KEY: too weak"),
        ({"DJANGO_ALLOWED_HOSTS": ""}, "DJANGO_ALLOWED_HOSTS: required in production"),
        ({"DJANGO_SECRET_KEY_FILE": "/nonexistent/key", "DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY_FILE: cannot read"),
        ({"LOGINSVC_MODE": "prod"}, "LOGINSVC_MODE: must be 'local' or 'production'"),
        ({"LOGINSVC_LOCKOUT_THRESHOLD": "ten"}, "LOGINSVC_LOCKOUT_THRESHOLD: is not a number"),
        ({"LOGINSVC_ARGON2_MEMORY_COST": "-5"}, "LOGINSVC_ARGON2_MEMORY_COST: must be a positive integer"),
        ({"LOGINSVC_PRODUCT_ORIGINS": "https://ok.test,ftp://x"}, "LOGINSVC_PRODUCT_ORIGINS: 'ftp://x' is not an origin"),
        ({"LOGINSVC_JSON_LOGS": "maybe"}, "LOGINSVC_JSON_LOGS: must be one of"),
        ({"LOGINSVC_SESSION_MAX_SECONDS": "60"}, "LOGINSVC_SESSION_MAX_SECONDS: must not be shorter"),
        ({"LOGINSVC_IPV6_PREFIX_LENGTH": "129"}, "LOGINSVC_IPV6_PREFIX_LENGTH: must be between 1 and 128"),
        ({"DJANGO_CSRF_TRUSTED_ORIGINS": "https://a.test, mail.test"}, "DJANGO_CSRF_TRUSTED_ORIGINS: 'mail.test'"),
        ({"LOGINSVC_OIDC_ISSUER": ""}, "LOGINSVC_OIDC_ISSUER: '' is not an origin"),
        ({"LOGINSVC_OIDC_ISSUER": "http://login.example.test"}, "LOGINSVC_OIDC_ISSUER: must be an https origin"),
        ({"LOGINSVC_OIDC_ISSUER": "https://login.example.test/path"}, "LOGINSVC_OIDC_ISSUER: 'https://login.example.test/path' is not an origin"),
        ({"LOGINSVC_OIDC_KEY_FILE": ""}, "LOGINSVC_OIDC_KEY_FILE: required in production"),
        ({"LOGINSVC_MFA_REQUIRED": "admins"}, "LOGINSVC_MFA_REQUIRED: must be one of none, staff, all"),
        ({"LOGINSVC_TRUSTED_PROXIES": "10.0.0.0/8, 10.0.0.300/8"},
         "LOGINSVC_TRUSTED_PROXIES: '10.0.0.300/8' is not an address range like 10.0.0.0/8"),
    ],
)
def test_bad_configuration_stops_with_one_clear_line(tmp_path, change: dict[str, str], message: str) -> None:
    result = manage(production_env(tmp_path, **change), "check", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("configuration error: ")
    assert message in lines[0]
    assert STRONG_KEY not in result.stderr


def test_production_cookies_are_secure(tmp_path) -> None:
    result = manage(production_env(tmp_path), "shell", "-c",
                    "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
                    "s.SECURE_HSTS_SECONDS, s.DEBUG)")
    assert result.stdout.strip().splitlines()[-1].split() == ["True", "True", "31536000", "False"]


def test_production_cookies_have_the_host_prefix_and_its_attributes(tmp_path) -> None:
    """__Host- cookies are refused by browsers unless Secure, Path=/ and without Domain: check the
    Set-Cookie headers a production node really sends, after a real login."""
    env = production_env(tmp_path)
    manage(env, "migrate", "--noinput", "-v", "0")
    script = (
        "from django.test import Client\n"
        "from loginsvc.accounts.models import User\n"
        "User.objects.create_user('cookie@example.test', 'a long enough password')\n"
        "c = Client(enforce_csrf_checks=True, HTTP_HOST='login.example.test')\n"
        "token = c.get('/api/session', secure=True).cookies['__Host-csrftoken'].value\n"
        "r = c.post('/api/login', {'username': 'cookie@example.test', 'password': 'a long enough password'},\n"
        "           content_type='application/json', secure=True, HTTP_X_CSRFTOKEN=token,\n"
        "           HTTP_ORIGIN='https://login.example.test')\n"
        "print(r.status_code)\n"
        "for morsel in c.cookies.values(): print(morsel.OutputString())\n"
    )
    lines = manage(env, "shell", "-v", "0", "-c", script).stdout.strip().splitlines()
    assert lines[0] == "200"
    cookies = {line.split("=", 1)[0]: line for line in lines[1:]}
    assert not {"csrftoken", "loginsvc_sid", "loginsvc_device"} & set(cookies)
    for line in (cookies["__Host-csrftoken"], cookies["__Host-loginsvc_sid"], cookies["__Host-loginsvc_device"]):
        attributes = {part.strip().split("=", 1)[0].lower() for part in line.split(";")[1:]}
        assert "secure" in attributes and "; Path=/" in line and "domain" not in attributes, line


def test_every_option_is_documented() -> None:
    from loginsvc.conf import OPTIONS, PREFIX
    from tests.support import ROOT

    documented = (ROOT / "docs" / "configuration.md").read_text()
    missing = [PREFIX + key for key in OPTIONS if f"`{PREFIX}{key}`" not in documented]
    assert not missing


def test_trusted_origins_are_trimmed_and_sqlite_urls_work(tmp_path) -> None:
    env = production_env(tmp_path, DJANGO_CSRF_TRUSTED_ORIGINS="https://a.test , https://B.test",
                         DATABASE_URL=f"sqlite:///{tmp_path}/other.sqlite3")
    result = manage(env, "shell", "-v", "0", "-c",
                    "from django.conf import settings as s; print(s.CSRF_TRUSTED_ORIGINS, s.DATABASES['default']['NAME'])")
    assert result.stdout.strip().splitlines()[-1] == f"['https://a.test', 'https://b.test'] {tmp_path}/other.sqlite3"


def test_production_needs_the_issuer_and_the_signing_keys(tmp_path) -> None:
    """Without them every token would name a default issuer and each node its own key."""
    for variable, message in (("LOGINSVC_OIDC_ISSUER", "LOGINSVC_OIDC_ISSUER: required in production"),
                              ("LOGINSVC_OIDC_KEY_FILE", "LOGINSVC_OIDC_KEY_FILE: required in production"),
                              ("LOGINSVC_MFA_KEY_FILE", "LOGINSVC_MFA_KEY_FILE: required in production")):
        env = production_env(tmp_path)
        del env[variable]
        result = manage(env, "check", check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.parametrize("content, problem", [("REPLACE-ME", "must hold 32 random bytes in base64"),
                                              ("c2hvcnQ=", "must hold 32 random bytes in base64")])
def test_a_bad_mfa_key_is_one_clear_error_at_check(tmp_path, content: str, problem: str) -> None:
    bad = tmp_path / "bad-mfa-key"
    bad.write_text(content)
    result = manage(production_env(tmp_path, LOGINSVC_MFA_KEY_FILE=str(bad)), "check", check=False)
    assert result.returncode != 0 and f"LOGINSVC_MFA_KEY_FILE ({bad}): {problem}" in result.stderr, result.stderr
    assert content not in result.stderr.replace(str(bad), "")  # the key's text is never echoed


ROUTES = ("from django.urls import Resolver404, resolve\n"
          "try:\n    print(resolve('/admin/').url_name)\nexcept Resolver404:\n    print('none')")


def test_the_admin_is_off_in_production_unless_enabled_and_check_deploy_stays_clean(tmp_path) -> None:
    assert manage(production_env(tmp_path), "shell", "-v", "0", "-c", ROUTES).stdout.strip() == "none"
    enabled = production_env(tmp_path, LOGINSVC_ADMIN_ENABLED="1")
    assert manage(enabled, "shell", "-v", "0", "-c", ROUTES).stdout.strip() == "index"
    checked = manage(enabled, "check", "--deploy", "--fail-level", "WARNING", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    bad = manage(production_env(tmp_path, LOGINSVC_ADMIN_ENABLED="maybe"), "check", check=False)
    assert bad.returncode != 0 and "LOGINSVC_ADMIN_ENABLED" in bad.stderr and bad.stderr.count("\n") <= 3
    local = dict(production_env(tmp_path), LOGINSVC_MODE="local")
    assert manage(local, "shell", "-v", "0", "-c", ROUTES).stdout.strip() == "index"



def test_check_deploy_warns_when_mail_clients_would_be_sent_to_loopback_or_plain_text(tmp_path) -> None:
    env = production_env(tmp_path, LOGINSVC_SUBMISSION_SERVER="smtp://mail.example.test:587")
    del env["LOGINSVC_IMAP_SERVER"]  # the default: make up's Dovecot on loopback
    warned = manage(env, "check", "--deploy", "--fail-level", "WARNING", check=False)
    output = warned.stdout + warned.stderr
    assert warned.returncode == 1 and output.count("loginsvc.W040") == 2
    assert "LOGINSVC_IMAP_SERVER" in output and "LOGINSVC_SUBMISSION_SERVER" in output
