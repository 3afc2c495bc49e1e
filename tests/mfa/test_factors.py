"""Which second factors an account has: the one-statement read of a sign-in's steps agrees with the queries."""
from __future__ import annotations

import copy

import pyotp
import pytest

from loginsvc.accounts.models import User
from loginsvc.mfa import factors, recovery, totp
from loginsvc.mfa.models import Passkey


def _as_queried(user: User) -> tuple[list[str], bool, int | None]:
    """What the separate queries say of `user` (a fresh object: nothing read with it)."""
    fresh = User.objects.get(pk=user.pk)
    device = totp.confirmed_device(fresh)
    return factors.methods_of(fresh), factors.has_factor(fresh), device.pk if device else None


def _as_read_once(user: User) -> tuple[list[str], bool, int | None]:
    loaded = factors.user_with_factors(email=user.email)
    assert loaded is not None and loaded.pk == user.pk and loaded.password == user.password
    device = totp.confirmed_device(loaded)
    return factors.methods_of(loaded), factors.has_factor(loaded), device.pk if device else None


def _passkey(user: User, n: int) -> None:
    Passkey.objects.create(user=user, credential_id=f"credential-{user.pk}-{n}", public_key=b"\x01", name=f"key {n}")


@pytest.mark.django_db
def test_one_statement_reads_what_the_queries_read_for_every_kind_of_account(django_user_model) -> None:
    def account(name: str) -> User:
        return django_user_model.objects.create_user(f"{name}@example.test", "a long enough password")

    shapes = {
        "none": account("none"),
        "unconfirmed": account("unconfirmed"),
        "app": account("app"),
        "app-codes": account("app-codes"),
        "passkeys-codes": account("passkeys-codes"),
        "codes-alone": account("codes-alone"),
        "codes-spent": account("codes-spent"),
    }
    totp.start_enrolment(shapes["unconfirmed"])
    for name in ("app", "app-codes", "codes-spent"):
        totp.enrol_confirmed(shapes[name], pyotp.random_base32(32))
    for name in ("app-codes", "passkeys-codes", "codes-alone", "codes-spent"):
        codes = recovery.new_set(shapes[name])
    for code in codes:  # the last set made: "codes-spent"'s, every one used
        assert recovery.use(shapes["codes-spent"], recovery.normalise(code))
    _passkey(shapes["passkeys-codes"], 1)
    _passkey(shapes["passkeys-codes"], 2)

    expected = {"none": [], "unconfirmed": [], "app": ["totp"], "app-codes": ["totp", "recovery"],
                "passkeys-codes": ["recovery", "webauthn"], "codes-alone": [], "codes-spent": ["totp"]}
    for name, user in shapes.items():
        assert _as_read_once(user) == _as_queried(user), name
        assert _as_read_once(user)[0] == expected[name], name
    loaded = factors.user_with_factors(email=shapes["app"].email)
    assert totp.accept(totp.confirmed_device(loaded), pyotp.TOTP(totp.secret_of(totp.confirmed_device(loaded))).now())


@pytest.mark.django_db
def test_only_an_active_account_is_read_by_id_and_an_unknown_one_is_none(user) -> None:
    assert factors.user_with_factors(email="nobody@example.test") is None
    assert factors.user_with_factors(active_id=user.pk).email == user.email
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert factors.user_with_factors(active_id=user.pk) is None
    assert factors.user_with_factors(email=user.email) is not None  # the password check refuses it then


@pytest.mark.django_db
def test_a_device_made_for_a_user_object_is_not_taken_for_a_read_one(user) -> None:
    """The ORM keeps a device created for `user` on that object; removing it must show at once."""
    totp.enrol_confirmed(user, pyotp.random_base32(32))
    same = copy.copy(user)
    assert totp.confirmed_device(user) is not None
    totp.remove(user)
    assert totp.confirmed_device(user) is None and totp.confirmed_device(same) is None
