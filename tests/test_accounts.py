"""Accounts: the email address is the login name, case-insensitive and unique; no default passwords."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from loginsvc.accounts.models import User


@pytest.mark.django_db
def test_email_is_stored_lower_case_and_unique_regardless_of_case() -> None:
    user = User.objects.create_user("  Mixed.Case@Example.TEST ", "x" * 12)
    assert user.email == "mixed.case@example.test"
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("MIXED.case@example.test", "y" * 12)


@pytest.mark.django_db
def test_functional_constraint_rejects_case_variant_written_around_save() -> None:
    User.objects.create_user("ann@example.test", "x" * 12)
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.bulk_create([User(email="ANN@example.test", password="!")])


@pytest.mark.django_db
def test_natural_key_lookup_ignores_case() -> None:
    created = User.objects.create_user("ann@example.test", "x" * 12)
    assert User.objects.get_by_natural_key("ANN@Example.Test") == created


@pytest.mark.django_db
def test_user_created_without_password_cannot_log_in() -> None:
    user = User.objects.create_user("nopass@example.test")
    assert not user.has_usable_password()


@pytest.mark.django_db
def test_createsuperuser_noinput_takes_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "an operator's long password")
    call_command("createsuperuser", "--noinput", "--email", "Ops@Example.test", verbosity=0)
    admin = User.objects.get(email="ops@example.test")
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password("an operator's long password")


@pytest.mark.django_db
def test_demo_users_need_demo_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    call_command("ensure_demo_users", verbosity=0)
    assert not User.objects.exists()
    monkeypatch.setenv("DEMO_PASSWORD", "demo password 1")
    call_command("ensure_demo_users", verbosity=0)
    assert User.objects.get(email="demo2@example.test").check_password("demo password 1")
    monkeypatch.setenv("DEMO_PASSWORD", "demo password 2")
    call_command("ensure_demo_users", verbosity=0)
    assert User.objects.get(email="demo@example.test").check_password("demo password 2")


@pytest.mark.django_db
def test_demo2_gets_an_authenticator_app_kept_across_restarts_in_an_owner_only_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`make up` prints demo2's otpauth:// URI and keeps it in var/demo2-totp.txt (0600); a restart keeps the
    secret while file and device agree, and makes a new one for both when they do not."""
    import io

    import pyotp

    from loginsvc.mfa import totp

    monkeypatch.setenv("LOGINSVC_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("DEMO_PASSWORD", "demo password 1")
    out = io.StringIO()
    call_command("ensure_demo_users", stdout=out)
    path = tmp_path / "demo2-totp.txt"
    uri = path.read_text().strip()
    assert path.stat().st_mode & 0o777 == 0o600 and uri in out.getvalue() and str(path) in out.getvalue()
    app = pyotp.parse_uri(uri)
    assert uri.startswith("otpauth://totp/") and app.digits == 6 and app.interval == 30 and app.digest().name == "sha1"
    demo2 = User.objects.get(email="demo2@example.test")
    device = totp.confirmed_device(demo2)
    assert device is not None and totp.secret_of(device) == app.secret
    assert totp.confirmed_device(User.objects.get(email="demo@example.test")) is None   # webmail: password alone

    call_command("ensure_demo_users", stdout=io.StringIO())               # a restart: the same secret
    assert path.read_text().strip() == uri and totp.secret_of(totp.confirmed_device(demo2)) == app.secret
    path.unlink()                                                          # file gone: a new secret for both
    call_command("ensure_demo_users", stdout=io.StringIO())
    renewed = pyotp.parse_uri(path.read_text().strip()).secret
    assert renewed != app.secret and totp.secret_of(totp.confirmed_device(demo2)) == renewed


def test_passwords_need_twelve_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    """ASVS 2.1.1; DEMO_PASSWORD (what `make up` uses) is held to the same rule, with one clear line."""
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError
    from django.core.management.base import CommandError

    with pytest.raises(ValidationError, match="at least 12 characters"):
        validate_password("kQ9!mZ2a#x7")  # 11
    validate_password("kQ9!mZ2a#x7w")
    monkeypatch.setenv("DEMO_PASSWORD", "short demo")
    with pytest.raises(CommandError, match="^DEMO_PASSWORD: This password is too short. It must contain at least 12"):
        call_command("ensure_demo_users", verbosity=0)
