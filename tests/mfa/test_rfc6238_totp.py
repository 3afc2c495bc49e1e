"""RFC 6238 authenticator apps: the codes an app computes are accepted within ±1 step, once per account."""
from __future__ import annotations

import time

import pyotp
import pytest

from loginsvc.mfa import sealing, totp
from loginsvc.mfa.models import TOTPDevice
from tests.mfa.conftest import on_two_nodes_at_once


def app_code(device: TOTPDevice, at: float) -> str:
    """What the user's authenticator app shows at `at`: pyotp, not our code, computes it."""
    return pyotp.TOTP(totp.secret_of(device)).at(at)


@pytest.fixture
def device(user) -> TOTPDevice:
    device = totp.start_enrolment(user)
    now = time.time()
    assert totp.confirm(device, app_code(device, now), now)
    return device


@pytest.mark.django_db
def test_4_codes_of_the_app_are_accepted_within_one_step(user) -> None:
    device = totp.start_enrolment(user)
    now = 1_800_000_015.0  # 15 s into a step
    assert not totp.confirmed_device(user)
    assert totp.confirm(device, app_code(device, now - 30), now)  # the step before: a slow typist
    assert totp.confirmed_device(user).pk == device.pk
    assert totp.accept(device, app_code(device, now), now)
    assert totp.accept(device, app_code(device, now + 30), now)  # the step after: a fast clock
    assert not totp.accept(device, app_code(device, now + 60), now)  # two steps away
    assert totp.matching_step(totp.secret_of(device), app_code(device, now - 60), now) is None


@pytest.mark.django_db
def test_5_2_a_code_is_accepted_once(device) -> None:
    now = time.time() + 30  # a step the fixture's confirmation did not use
    code = app_code(device, now)
    assert totp.accept(device, code, now)
    assert not totp.accept(device, code, now)  # the same code again: a replay
    assert not totp.accept(device, app_code(device, now - 30), now)  # an older step after a newer one


@pytest.mark.django_db(transaction=True)
def test_5_2_two_nodes_given_one_code_at_once_accept_it_once(user) -> None:
    """Two threads, each with its own database connection (as two nodes), race one code."""
    device = totp.start_enrolment(user)
    now = time.time()
    assert totp.confirm(device, app_code(device, now - 30), now)
    code = app_code(device, now)
    assert on_two_nodes_at_once(lambda: totp.accept(TOTPDevice.objects.get(pk=device.pk), code, now)) == [False, True]


@pytest.mark.parametrize("typed, expected", [("123456", "123456"), ("123 456", "123456"), ("12345", None),
                                             ("12345a", None), ("１２３４５６", None), ("", None), (None, None),
                                             (123456, None), ("1234567", None)])
def test_a_code_is_six_ascii_digits(typed, expected) -> None:
    assert totp.parse_code(typed) == expected


@pytest.mark.django_db
def test_the_secret_is_sealed_to_its_owner(user, django_user_model) -> None:
    device = totp.start_enrolment(user)
    secret = totp.secret_of(device)
    assert len(secret) == 32 and secret.encode() not in bytes(device.sealed_secret)
    other = django_user_model.objects.create_user("other@example.test", "x" * 16)
    with pytest.raises(sealing.Unreadable):  # moved to another account's row, it does not open
        sealing.unseal(device.sealed_secret, f"totp:{other.pk}")


@pytest.mark.django_db
def test_enrolment_shows_a_uri_and_qr_code_and_keeps_a_confirmed_app(user) -> None:
    device = totp.start_enrolment(user)
    uri = totp.provisioning_uri(device, user.email)
    assert uri.startswith("otpauth://totp/") and f"secret={totp.secret_of(device)}" in uri and "issuer=" in uri
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg") and "<script" not in svg
    again = totp.start_enrolment(user)  # a second scan replaces an unconfirmed secret
    assert again.pk == device.pk and totp.secret_of(again) != totp.secret_of(device)
    now = time.time()
    assert totp.confirm(again, app_code(again, now), now)
    with pytest.raises(ValueError):
        totp.start_enrolment(user)
    assert totp.remove(user) and totp.confirmed_device(user) is None
