"""Accounts: the email address is the login name, case-insensitive and unique; no default passwords."""
from __future__ import annotations

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
