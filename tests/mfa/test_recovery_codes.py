"""Recovery codes: ten, single use (once across nodes), kept as keyed digests, replaced as a set."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from loginsvc.mfa import recovery, totp
from loginsvc.mfa.models import RecoveryCode
from tests.conftest import PASSWORD, login
from tests.mfa.conftest import confirm_with_last_step, on_two_nodes_at_once


@pytest.mark.django_db
def test_ten_codes_each_used_once(user) -> None:
    codes = recovery.new_set(user)
    assert len(codes) == 10 and len(set(codes)) == 10 and recovery.remaining(user) == 10
    stored = set(RecoveryCode.objects.filter(user=user).values_list("digest", flat=True))
    assert not any(code.replace("-", "") in digest for code in codes for digest in stored)
    typed = " " + codes[3].upper() + " "  # case, spaces and the hyphen do not matter
    assert recovery.use(user, recovery.normalise(typed))
    assert not recovery.use(user, recovery.normalise(typed))
    assert recovery.remaining(user) == 9


@pytest.mark.django_db
def test_a_new_set_invalidates_the_old(user) -> None:
    old = recovery.new_set(user)
    new = recovery.new_set(user)
    assert not recovery.use(user, recovery.normalise(old[0]))
    assert recovery.use(user, recovery.normalise(new[0])) and recovery.remaining(user) == 9


@pytest.mark.django_db
def test_a_code_is_the_accounts_own(user, django_user_model) -> None:
    codes = recovery.new_set(user)
    other = django_user_model.objects.create_user("other@example.test", "x" * 16)
    recovery.new_set(other)
    assert not recovery.use(other, recovery.normalise(codes[0]))
    assert recovery.remaining(user) == 10


@pytest.mark.parametrize("typed", ["", "abcde", "abcde-fghi0", "abcde-fghjkm", "ABCDE_FGHJK", None, 12345])
def test_what_cannot_be_a_code_is_refused_before_any_lookup(typed) -> None:
    assert recovery.normalise(typed) is None


@pytest.mark.django_db(transaction=True)
def test_two_nodes_given_one_code_at_once_accept_it_once(user) -> None:
    code = recovery.normalise(recovery.new_set(user)[0])
    assert on_two_nodes_at_once(lambda: recovery.use(user, code)) == [False, True]


@pytest.mark.django_db
def test_mfa_reset_takes_every_factor_and_every_session(user, client) -> None:
    """`manage.py mfa_reset EMAIL`: for an owner who lost every factor; bad input is one line, exit 1."""
    assert login(client, user.email, PASSWORD).status_code == 302  # a session from before
    device = totp.start_enrolment(user)
    assert confirm_with_last_step(device)
    recovery.new_set(user)
    out = io.StringIO()
    call_command("mfa_reset", user.email.upper(), stdout=out)
    assert "authenticator app: yes, passkeys: 0, unused recovery codes: 10" in out.getvalue()
    assert totp.confirmed_device(user) is None and recovery.remaining(user) == 0
    assert client.get("/api/session").json() == {"authenticated": False}
    for bad, message in (("not-an-address", "is not an email address"), ("nobody@example.test", "no account")):
        with pytest.raises(CommandError, match=message):
            call_command("mfa_reset", bad, stdout=io.StringIO())
