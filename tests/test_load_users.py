"""`manage.py ensure_load_users` and `remove_load_users`: the load suites' accounts, created once, fixed when changed,
never with a default password, never in production, and removed again without touching anyone else's account."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from loginsvc.accounts.load_users import CLIENT_ID, email_of, is_load_account
from loginsvc.accounts.models import User
from tests.support import manage
from tests.test_settings import production_env

PASSWORD = "a load-test password of some length"
# Addresses that look like load-test accounts but are not ensure_load_users' own: nobody may delete them.
NOT_LOAD_ACCOUNTS = ("demo@example.test", "loadtest-0000@example.test", "someone@loadtest.example.test",
                     "loadtest-0000@notloadtest.example.test", "loadtest-0000@loadtest.example.test.other.test",
                     "loadtest-00000@loadtest.example.test", "loadtest-000@loadtest.example.test",
                     "loadtest.0000@loadtest.example.test")


@pytest.fixture
def load_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LOADTEST_PASSWORD", PASSWORD)
    return PASSWORD


def load_emails() -> list[str]:
    return sorted(User.objects.filter(email__endswith="@loadtest.example.test").values_list("email", flat=True))


@pytest.mark.django_db
def test_creates_the_accounts_once_and_repairs_a_changed_one(load_password: str, capsys) -> None:
    call_command("ensure_load_users", "--count", "3")
    assert "3 created, 0 updated" in capsys.readouterr().out
    emails = [email_of(i, "loadtest") for i in range(3)]
    assert emails[0] == "loadtest-0000@loadtest.example.test"
    assert all(User.objects.get(email=e).check_password(PASSWORD) for e in emails)
    user = User.objects.get(email=emails[1])
    user.set_password("someone changed it meanwhile")
    user.is_active = False
    user.save()
    call_command("ensure_load_users", "--count", "3")
    assert "0 created, 1 updated" in capsys.readouterr().out
    user.refresh_from_db()
    assert user.is_active and user.check_password(PASSWORD)


@pytest.mark.django_db
def test_mfa_gives_the_first_accounts_the_derived_secret_and_takes_it_from_the_others(load_password: str,
                                                                                  capsys) -> None:
    """What the load suites' MFA journey relies on: the first N have a confirmed app with the secret every Locust
    process derives from the password and address; a second run with a smaller N leaves the rest without one,
    and each run resets the last accepted step (a new run may use the current step's code again)."""
    import pyotp

    from loginsvc.accounts.load_users import totp_secret
    from loginsvc.mfa import totp

    def apps() -> dict[str, str]:
        return {d.user.email: totp.secret_of(d) for d in totp.TOTPDevice.objects.filter(confirmed=True)}

    call_command("ensure_load_users", "--count", "4", "--mfa", "2")
    assert "2 with an authenticator app" in capsys.readouterr().out
    assert apps() == {email_of(i): totp_secret(PASSWORD, email_of(i)) for i in range(2)}
    device = totp.confirmed_device(User.objects.get(email=email_of(0)))
    assert totp.accept(device, pyotp.TOTP(apps()[email_of(0)]).now())   # the service takes the derived code
    call_command("ensure_load_users", "--count", "4", "--mfa", "2")      # idempotent: same secrets, step reset
    assert apps() == {email_of(i): totp_secret(PASSWORD, email_of(i)) for i in range(2)}
    assert totp.TOTPDevice.objects.get(user__email=email_of(0)).last_step == 0
    call_command("ensure_load_users", "--count", "4", "--mfa", "1")
    assert list(apps()) == [email_of(0)] and totp.TOTPDevice.objects.count() == 1
    call_command("ensure_load_users", "--count", "4")                   # default 0: none
    assert not totp.TOTPDevice.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("args, env, message", [
    (["--count", "0"], PASSWORD, "--count"),
    (["--prefix", "bad prefix!"], PASSWORD, "--prefix"),
    (["--prefix", "Upper"], PASSWORD, "--prefix: lower-case"),
    (["--count", "3", "--mfa", "4"], PASSWORD, "--mfa: must be between 0 and --count"),
    (["--mfa", "-1"], PASSWORD, "--mfa: must be between 0"),   # stored lower-cased: it would never be found again
    ([], None, "LOADTEST_PASSWORD is not set"),
    ([], "short", "LOADTEST_PASSWORD:"),
])
def test_refuses_bad_arguments_and_passwords_touching_nothing(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                             env: str | None, message: str) -> None:
    if env is None:
        monkeypatch.delenv("LOADTEST_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("LOADTEST_PASSWORD", env)
    with pytest.raises(CommandError, match=message.replace("-", r"\-")):
        call_command("ensure_load_users", *args)
    assert not load_emails()


# --- production (ASVS 4.0.3 2.5.4: no shared or default accounts; these share one password) -------------------
@pytest.mark.django_db
def test_asvs_2_5_4_production_refuses_to_create_load_accounts_and_creates_none(load_password: str, settings: Any) -> None:
    settings.PRODUCTION = True
    with pytest.raises(CommandError) as refused:
        call_command("ensure_load_users", "--count", "5")
    message = str(refused.value)
    assert refused.value.returncode == 2 and "\n" not in message
    assert message.startswith("ensure_load_users: refused in production (LOGINSVC_MODE=production)"), message
    assert not load_emails()


def test_asvs_2_5_4_the_command_in_production_mode_exits_2_with_one_line(tmp_path: Path) -> None:
    """The real mode switch: LOGINSVC_MODE=production in a manage.py process of its own."""
    result = manage(production_env(tmp_path, LOADTEST_PASSWORD=PASSWORD), "ensure_load_users", "--count", "5",
                    check=False)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused in production (LOGINSVC_MODE=production)" in lines[0], result.stderr
    assert not result.stdout and PASSWORD not in result.stderr


# --- removal --------------------------------------------------------------------------------------------------
def _client_with_tokens(client_id: str, users: list[Any]) -> int:
    """A product and one access token (with its refresh token) per user: what a load run leaves behind."""
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.models import AccessToken, RefreshToken

    from tests.sso.conftest import register

    application = register(client_id).application
    for user in users:
        token = AccessToken.objects.create(user=user, application=application, token=f"at-{client_id}-{user.pk}",
                                           expires=timezone.now() + timedelta(minutes=5), scope="openid")
        RefreshToken.objects.create(user=user, application=application, token=f"rt-{client_id}-{user.pk}",
                                    access_token=token)
    return application.pk


def remove(*options: str) -> list[str]:
    out = io.StringIO()
    call_command("remove_load_users", *options, stdout=out)
    return out.getvalue().splitlines()


@pytest.mark.django_db
def test_removal_takes_the_load_accounts_and_client_and_nothing_else(load_password: str) -> None:
    from oauth2_provider.models import AccessToken, Application, RefreshToken

    call_command("ensure_load_users", "--count", "3", stdout=io.StringIO())
    call_command("ensure_load_users", "--count", "2", "--prefix", "canary-7", stdout=io.StringIO())
    people = [User.objects.create_user(email, PASSWORD) for email in NOT_LOAD_ACCOUNTS]
    load = list(User.objects.filter(email__in=[email_of(i) for i in range(3)]))
    _client_with_tokens(CLIENT_ID, load + people[:1])
    _client_with_tokens("webmail", load[:1] + people)

    # 3 + 1 tokens of the loadtest client, 1 of webmail for a load-test account; each with its refresh token
    assert remove("--dry-run") == ["would remove 5 load-test accounts (canary-7-0000@loadtest.example.test … "
                                   "loadtest-0002@loadtest.example.test)", "would remove client 'loadtest'",
                                   "would remove with them: 5 access tokens, 5 refresh tokens"]
    assert User.objects.count() == 5 + len(NOT_LOAD_ACCOUNTS) and Application.objects.filter(client_id=CLIENT_ID).exists()

    assert remove() == ["removed 5 load-test accounts (canary-7-0000@loadtest.example.test … "
                        "loadtest-0002@loadtest.example.test)", "removed client 'loadtest'",
                        "removed with them: 5 access tokens, 5 refresh tokens"]
    assert sorted(User.objects.values_list("email", flat=True)) == sorted(NOT_LOAD_ACCOUNTS)
    assert not Application.objects.filter(client_id=CLIENT_ID).exists()
    webmail = Application.objects.get(client_id="webmail")
    assert sorted(AccessToken.objects.filter(application=webmail).values_list("user__email", flat=True)) == sorted(
        NOT_LOAD_ACCOUNTS)
    assert RefreshToken.objects.filter(application=webmail).count() == len(NOT_LOAD_ACCOUNTS)
    assert not AccessToken.objects.filter(user__email__in=[email_of(i) for i in range(3)]).exists()

    assert remove() == ["no load-test accounts", "no 'loadtest' client"]   # idempotent


@pytest.mark.parametrize("email", NOT_LOAD_ACCOUNTS)
def test_only_addresses_ensure_load_users_makes_count_as_load_accounts(email: str) -> None:
    assert not is_load_account(email)
    assert is_load_account(email_of(0)) and is_load_account(email_of(9999, "canary-7"))


@pytest.mark.django_db
def test_removal_works_in_production_where_such_accounts_must_not_stay(load_password: str, settings: Any) -> None:
    call_command("ensure_load_users", "--count", "2", stdout=io.StringIO())
    settings.PRODUCTION = True
    assert remove()[0].startswith("removed 2 load-test accounts")
    assert not load_emails()
