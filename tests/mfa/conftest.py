"""Fixtures of the second-factor tests: an account with a confirmed authenticator app, and its codes."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pyotp
import pytest
from django.db import OperationalError, connection
from django.test import Client

from loginsvc.mfa import totp
from loginsvc.mfa.models import TOTPDevice
from tests.conftest import PASSWORD, csrf_from


def app_code(user: Any, steps_ahead: int = 0) -> str:
    """What the user's authenticator app shows now (or that many 30 s steps later): pyotp computes it."""
    device = TOTPDevice.objects.get(user=user)
    return pyotp.TOTP(totp.secret_of(device)).at(time.time() + 30 * steps_ahead)


def confirm_with_last_step(device: TOTPDevice) -> bool:
    """Enrolment confirmed with the code of the step before now, judged at that same now (so the codes of
    now and of the next step are still unused): a 30 s boundary crossed between computing the code and
    checking it would make the code two steps old, and refused."""
    now = time.time()
    return totp.confirm(device, pyotp.TOTP(totp.secret_of(device)).at(now - 30), now)


@pytest.fixture
def mfa_user(user):
    """The suite's user with an authenticator app, confirmed with the code of the step before now."""
    assert confirm_with_last_step(totp.start_enrolment(user))
    return user


ENROL_BY_SHELL = """
import time, pyotp
from loginsvc.accounts.models import User
from loginsvc.mfa import totp
email, password = %(email)r, %(password)r
user = User.objects.create_user(email, password) if password else User.objects.get(email=email)
device = totp.start_enrolment(user)
now = time.time()   # one clock read: the code of the step before it, judged at it
assert totp.confirm(device, pyotp.TOTP(totp.secret_of(device)).at(now - 30), now)
print(totp.secret_of(device))
"""


def enrol_by_shell(env: dict[str, str], email: str, password: str | None = None) -> pyotp.TOTP:
    """An authenticator app for the account EMAIL (created first with `password` when given), set up
    through `manage.py shell` beside real nodes: the app, as pyotp computes its codes."""
    from deploy.node import manage

    made = manage(env, "shell", "-v", "0", "-c", ENROL_BY_SHELL % {"email": email, "password": password},
                  check=False)
    assert made.returncode == 0, made.stderr
    return pyotp.TOTP(made.stdout.strip().splitlines()[-1])


def post_json(client: Client, path: str, body: Any) -> Any:
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, raw, content_type="application/json", HTTP_X_CSRFTOKEN=csrf_from(client))


def password_step(client: Client, user: Any, password: str = PASSWORD) -> Any:
    return post_json(client, "/api/login", {"username": user.email, "password": password})


def on_two_nodes_at_once(call: Callable[[], bool]) -> list[bool]:
    """`call` in two threads released together, each on its own database connection (as two nodes
    would be): their results, sorted."""
    results: list[bool] = []
    start = threading.Barrier(2)

    def node() -> None:
        try:
            start.wait()
            try:
                results.append(call())
            except OperationalError as exc:
                # The test database is SQLite's shared-cache memory database, whose table locks fail at
                # once (SQLITE_LOCKED) where a database file waits for its busy timeout, as nodes' do:
                # do what that wait does, once.
                if "locked" not in str(exc):
                    raise
                results.append(call())
        finally:
            connection.close()

    threads = [threading.Thread(target=node) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return sorted(results)
