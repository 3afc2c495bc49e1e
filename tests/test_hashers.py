"""Argon2id with the configured cost, and upgrade of hashes made with other parameters at login."""
from __future__ import annotations

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from django.test import override_settings

from loginsvc.accounts.models import User
from tests.conftest import PASSWORD, login


@pytest.mark.django_db
def test_new_hashes_are_argon2id_with_configured_parameters(settings) -> None:
    user = User.objects.create_user("a@example.test", PASSWORD)
    conf = settings.LOGINSVC
    expected = f"m={conf['ARGON2_MEMORY_COST']},t={conf['ARGON2_TIME_COST']},p={conf['ARGON2_PARALLELISM']}"
    assert user.password.startswith("argon2$argon2id$v=19$" + expected + "$")


@pytest.mark.django_db
def test_parameters_follow_configuration(settings) -> None:
    with override_settings(LOGINSVC={**settings.LOGINSVC, "ARGON2_MEMORY_COST": 19456}):
        assert "m=19456,t=2,p=1" in make_password("whatever password")


@pytest.mark.django_db
def test_hash_with_other_argon2_parameters_is_upgraded_on_login(client, settings) -> None:
    with override_settings(LOGINSVC={**settings.LOGINSVC, "ARGON2_MEMORY_COST": 8192, "ARGON2_TIME_COST": 1}):
        user = User.objects.create_user("old@example.test", PASSWORD)
    assert "m=8192,t=1" in user.password
    assert login(client, "old@example.test", PASSWORD).status_code == 302
    user.refresh_from_db()
    assert f"m={settings.LOGINSVC['ARGON2_MEMORY_COST']},t={settings.LOGINSVC['ARGON2_TIME_COST']}" in user.password


@pytest.mark.django_db
def test_pbkdf2_hash_is_replaced_by_argon2id_on_login(client) -> None:
    user = User.objects.create_user("legacy@example.test")
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "legacysalt1234")
    user.save()
    assert login(client, "legacy@example.test", PASSWORD).status_code == 302
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$")


@pytest.mark.django_db
def test_wrong_password_does_not_upgrade(client) -> None:
    user = User.objects.create_user("legacy2@example.test")
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "legacysalt5678")
    user.save()
    assert login(client, "legacy2@example.test", "wrong password!").status_code == 401
    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_sha256$")
