"""A sign-in waiting for its second factor: state in the browser's session, which grants nothing yet.

After a correct password, an account with a second factor is not signed in. Its browser's session
(a new key, as at sign-in: a session id fixed before the password was typed is worth nothing) gets
this state instead: who, how they have proven themselves so far (RFC 8176 `amr`), and until when (`LOGINSVC_MFA_PENDING_SECONDS`, 5 min). Sessions
live in Redis and the database that every node of both clusters shares, so the second step may land
on any node. It is bound to the browser (its session cookie), cannot be forged (the server keeps it,
the cookie is a random key), ends at the first success (`end`) and with its deadline. The user's
session auth hash (derived from the password hash) is kept too: a password changed, or an account
disabled, between the two steps voids the state.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import SESSION_KEY as SESSION_USER_KEY
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare

from loginsvc import conf
from loginsvc.accounts import session_registry
from loginsvc.accounts.models import User
from loginsvc.mfa import factors

SESSION_KEY = "loginsvc_mfa_pending"


@dataclass(frozen=True)
class Pending:
    user: User
    amr: tuple[str, ...]
    counted: bool  # the password step of this sign-in was counted by the throttle (not an SSO step-up)
    # The password came through the account-wide step-up (throttle.step_up): the second step is
    # then counted as from a known source, since the account lock would refuse it.
    via_account_step_up: bool = False


def begin(request: HttpRequest, user: User, amr: list[str], counted: bool = True,
          via_account_step_up: bool = False) -> None:
    """Start waiting for `user`'s second factor in this browser. A session signed in as someone else
    is emptied first, as django.contrib.auth.login does: the browser is nobody's until the end."""
    if str(request.session.get(SESSION_USER_KEY, user.pk)) != str(user.pk):
        request.session.flush()
    elif request.session.session_key is not None:  # no session yet: the one saved now is new anyway
        request.session.cycle_key()
        session_registry.follow(request)  # a signed-in browser re-authenticating keeps its record
    request.session[SESSION_KEY] = {"user_id": user.pk, "auth_hash": user.get_session_auth_hash(), "amr": amr,
                                    "counted": counted, "via_account_step_up": via_account_step_up,
                                    "until": time.time() + conf.get("MFA_PENDING_SECONDS")}


def current(request: HttpRequest) -> Pending | None:
    """The waiting sign-in of this browser, or None (none, expired, or its account changed). Its
    user is read with its second factors (factors.user_with_factors): the step checks one of them next."""
    state: Any = request.session.get(SESSION_KEY)
    if not isinstance(state, dict):
        return None
    user = None
    if time.time() < state.get("until", 0):
        user = factors.user_with_factors(active_id=state.get("user_id"))
    if user is None or not constant_time_compare(user.get_session_auth_hash(), state.get("auth_hash", "")):
        end(request)
        return None
    return Pending(user, tuple(state.get("amr", ())), bool(state.get("counted", True)),
                   bool(state.get("via_account_step_up", False)))  # absent in states saved before it


def end(request: HttpRequest) -> None:
    request.session.pop(SESSION_KEY, None)
