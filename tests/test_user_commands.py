"""`manage.py create_user`, `disable_user` and `enable_user`: accounts made, disabled and enabled by ops, with the
password never an argument, every refusal one line (exit 2: bad input; exit 1: the account exists, or does
not), and a disabled account's sessions and product sign-ins ended at once."""
from __future__ import annotations

import io
import logging
import sys

import pytest
from django.core.management import CommandError, call_command, load_command_class
from django.test import Client

from loginsvc.accounts import sign_ins
from loginsvc.accounts.models import User
from tests.conftest import PASSWORD, login
from tests.test_audit_log import audit_entries

NEW = "New.Person@Example.test"
NEW_PASSWORD = "a fresh and long passphrase"


@pytest.fixture
def new_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LOGINSVC_NEW_PASSWORD", NEW_PASSWORD)
    return NEW_PASSWORD


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGINSVC_NEW_PASSWORD", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # not a TTY: nobody to ask


def run(*args: str) -> str:
    """call_command, returning what the command printed."""
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def refused(*args: str) -> CommandError:
    """The CommandError of an in-process run (manage.py prints it as one line and exits with its returncode)."""
    with pytest.raises(CommandError) as caught:
        run(*args)
    assert "\n" not in str(caught.value)
    return caught.value


def from_command_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """What `manage.py ARGV` exits with and writes on stderr, run in this process (so on the test database)."""
    from django.core.management import base

    monkeypatch.setattr(base.connections, "close_all", lambda: None)  # run_from_argv's; the test owns the connection
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        load_command_class("loginsvc.accounts", argv[0]).run_from_argv(["manage.py", *argv])
    return exited.value.code, capsys.readouterr().err  # type: ignore[return-value]


def signed_in(email: str, password: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    assert login(client, email, password).status_code == 302
    assert authenticated(client)
    return client


def authenticated(client: Client) -> bool:
    return client.get("/api/session").json()["authenticated"]


def audit_messages(caplog: pytest.LogCaptureFixture) -> list[tuple[str, object]]:
    return [(e["msg"], e.get("user_id")) for e in audit_entries(caplog)[0] if e["msg"].startswith("account:")]


# --- create_user ----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_create_takes_the_password_from_the_environment_and_the_account_can_sign_in(new_password: str) -> None:
    out = run("create_user", NEW, "--display-name", "New Person")
    assert out == "created new.person@example.test\n" and new_password not in out
    user = User.objects.get(email="new.person@example.test")
    assert user.display_name == "New Person" and user.is_active
    assert not user.is_staff and not user.is_superuser
    signed_in(NEW.upper(), new_password)


@pytest.mark.django_db
def test_staff_option_makes_a_staff_account_but_not_a_superuser(new_password: str) -> None:
    assert run("create_user", NEW, "--staff") == "created new.person@example.test (staff)\n"
    user = User.objects.get(email="new.person@example.test")
    assert user.is_staff and not user.is_superuser


@pytest.mark.django_db
@pytest.mark.parametrize("password, problem", [
    ("short pw", "too short"),
    ("12345678901234567", "entirely numeric"),
    ("new.person@example.test", "too similar to the email address"),  # only if the new account is checked against
    ("New Person Mail", "too similar to the display name"),
])
def test_a_password_the_rules_refuse_exits_2_and_creates_nothing(monkeypatch: pytest.MonkeyPatch, password: str,
                                                                 problem: str) -> None:
    monkeypatch.setenv("LOGINSVC_NEW_PASSWORD", password)
    error = refused("create_user", NEW, "--display-name", "New Person Mail")
    assert error.returncode == 2 and problem in str(error) and password not in str(error)
    assert not User.objects.filter(email="new.person@example.test").exists()


@pytest.mark.django_db
def test_an_address_that_has_an_account_exits_1_and_changes_nothing(user: User, new_password: str) -> None:
    error = refused("create_user", user.email.upper(), "--staff")
    assert error.returncode == 1 and "already has an account" in str(error)
    user.refresh_from_db()
    assert User.objects.count() == 1 and user.check_password(PASSWORD) and not user.is_staff


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["not an address", "two@at@example.test", "@example.test",
                                   "x" * 64 + "@" + ".".join(["d" * 60] * 4) + ".test"])  # 319 characters
def test_a_bad_address_exits_2_and_creates_nothing(new_password: str, email: str) -> None:
    error = refused("create_user", email)
    assert error.returncode == 2
    assert not User.objects.exists()


@pytest.mark.django_db
def test_without_a_password_source_it_exits_2_naming_the_variable(no_terminal: None) -> None:
    error = refused("create_user", NEW)
    assert error.returncode == 2 and "LOGINSVC_NEW_PASSWORD" in str(error)
    assert not User.objects.exists()


@pytest.mark.django_db
def test_an_empty_password_variable_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGINSVC_NEW_PASSWORD", "")
    error = refused("create_user", NEW)
    assert error.returncode == 2 and "LOGINSVC_NEW_PASSWORD is set but empty" in str(error)
    assert not User.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("typed, created", [((NEW_PASSWORD, NEW_PASSWORD), True),
                                            ((NEW_PASSWORD, NEW_PASSWORD + "!"), False)])
def test_on_a_terminal_the_password_is_asked_twice_and_must_match(monkeypatch: pytest.MonkeyPatch, no_terminal: None,
                                                                  typed: tuple[str, str], created: bool) -> None:
    from loginsvc.accounts.management.commands import create_user

    answers = iter(typed)
    monkeypatch.setattr(sys, "stdin", type("Terminal", (io.StringIO,), {"isatty": lambda self: True})())
    monkeypatch.setattr(create_user, "getpass", lambda prompt: next(answers))
    if created:
        assert run("create_user", NEW) == "created new.person@example.test\n"
        assert User.objects.get(email="new.person@example.test").check_password(NEW_PASSWORD)
    else:
        error = refused("create_user", NEW)
        assert error.returncode == 2 and "differ" in str(error)
        assert not User.objects.exists()
    assert next(answers, None) is None  # both were asked for


@pytest.mark.django_db
def test_create_logs_an_audit_line_with_the_user_id_and_neither_address_nor_password(
        new_password: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    run("create_user", NEW)
    user = User.objects.get(email="new.person@example.test")
    assert audit_messages(caplog) == [("account: created by ops", user.pk)]
    text = audit_entries(caplog)[1]
    assert user.email not in text.lower() and new_password not in text


# --- disable_user, enable_user --------------------------------------------------------------------------------
@pytest.mark.django_db
def test_disable_ends_a_signed_in_session_and_every_product_sign_in_at_once(user: User,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    client = signed_in(user.email, PASSWORD)
    ended: list[tuple[object, str]] = []

    def receiver(sender: object, user_id: object, by: str, **kwargs: object) -> None:
        ended.append((user_id, by))

    sign_ins.all_ended.connect(receiver)
    try:
        out = run("disable_user", user.email.upper())
    finally:
        sign_ins.all_ended.disconnect(receiver)
    assert out.startswith(f"disabled {user.email}") and out.count("\n") == 1
    assert not authenticated(client)
    assert ended == [(user.pk, sign_ins.DEACTIVATED)]
    user.refresh_from_db()
    assert not user.is_active
    assert login(Client(), user.email, PASSWORD).status_code != 302
    assert audit_messages(caplog) == [("account: disabled by ops", user.pk)]


@pytest.mark.django_db
def test_disable_twice_says_so_and_exits_0_changing_nothing(user: User, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    run("disable_user", user.email)
    caplog.clear()
    assert run("disable_user", user.email) == f"{user.email} is already disabled: nothing changed\n"
    assert audit_messages(caplog) == []
    assert not User.objects.get(pk=user.pk).is_active


@pytest.mark.django_db
def test_enable_lets_a_disabled_account_sign_in_again(user: User, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    run("disable_user", user.email)
    caplog.clear()
    assert run("enable_user", user.email.upper()) == f"enabled {user.email}\n"
    assert User.objects.get(pk=user.pk).is_active
    signed_in(user.email, PASSWORD)
    assert audit_messages(caplog) == [("account: enabled by ops", user.pk)]
    assert run("enable_user", user.email) == f"{user.email} is already enabled: nothing changed\n"


@pytest.mark.django_db
def test_enable_does_not_bring_back_a_session_the_disable_ended(user: User) -> None:
    """Django refuses an inactive user's session without ending it: the disable must end it for good."""
    client = signed_in(user.email, PASSWORD)
    run("disable_user", user.email)
    run("enable_user", user.email)
    assert not authenticated(client)


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["disable_user", "enable_user"])
def test_an_unknown_address_exits_1_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                  user: User, command: str) -> None:
    assert refused(command, "Nobody@Example.test").returncode == 1
    status, err = from_command_line(monkeypatch, capsys, command, "Nobody@Example.test")
    assert status == 1 and err == "CommandError: no account 'nobody@example.test'\n"
    assert User.objects.get(pk=user.pk).is_active


# --- all three: bad arguments ---------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("command", ["create_user", "disable_user", "enable_user"])
@pytest.mark.parametrize("args, problem", [((), "the following arguments are required: email"),
                                           ((NEW, "--bogus"), "unrecognized arguments: --bogus")])
def test_bad_arguments_are_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                               new_password: str, command: str, args: tuple[str, ...],
                                               problem: str) -> None:
    status, err = from_command_line(monkeypatch, capsys, command, *args)
    assert status == 2 and err.count("\n") == 1 and problem in err and "usage:" not in err, err
    error = refused(command, *args)
    assert error.returncode == 2 and problem in str(error)
    assert not User.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["save", "queryset"])
def test_any_way_of_disabling_ends_the_sessions_for_good(user, how: str) -> None:
    """Not only the command: the admin's or a shell's save, and a bulk update, end the sessions so that
    enabling the account again does not bring them back."""
    from django.test import Client

    from loginsvc.accounts.models import User
    from tests.conftest import PASSWORD, login

    browser = Client(enforce_csrf_checks=True)
    assert login(browser, user.email, PASSWORD).status_code == 302
    if how == "save":
        user.is_active = False
        user.save()
    else:
        User.objects.filter(pk=user.pk).update(is_active=False)
    User.objects.filter(pk=user.pk).update(is_active=True)
    assert browser.get("/api/session").json() == {"authenticated": False}


@pytest.mark.django_db
def test_list_sessions_shows_the_live_sessions_of_the_account(user: User) -> None:
    assert run("list_sessions", user.email) == f"{user.email}: no live session\n"
    browser = Client(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0")
    assert login(browser, user.email, PASSWORD).status_code == 302
    table = run("list_sessions", user.email.upper()).splitlines()
    assert table[0].split() == ["id", "browser", "system", "address", "cluster", "first_seen", "last_seen", "products"]
    assert "Firefox 140" in table[1] and "127.0.0.1" in table[1] and len(table) == 2
    import json

    [listed] = json.loads(run("list_sessions", user.email, "--json"))["sessions"]
    assert listed["browser"] == "Firefox 140" and listed["products"] == [] and "current" not in listed
    with pytest.raises(CommandError, match="no account"):
        run("list_sessions", "nobody@example.test")
    with pytest.raises(CommandError) as bad:
        run("list_sessions", user.email, "--bogus")
    assert bad.value.returncode == 2
