"""`manage.py ensure_load_users`: the load suites' accounts, created once, fixed when changed, never with a default password."""
from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from loginsvc.accounts.management.commands.ensure_load_users import email_of
from loginsvc.accounts.models import User

PASSWORD = "a load-test password of some length"


@pytest.mark.django_db
def test_creates_the_accounts_once_and_repairs_a_changed_one(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("LOADTEST_PASSWORD", PASSWORD)
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
@pytest.mark.parametrize("args, env, message", [
    (["--count", "0"], PASSWORD, "--count"),
    (["--prefix", "bad prefix!"], PASSWORD, "--prefix"),
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
    assert not User.objects.filter(email__endswith="@loadtest.example.test").exists()
