"""A sign-in confirmed by a code mailed to the account: how the account-wide step-up lets its owner in.

After ACCOUNT_FAILURE_LIMIT failures the correct password alone no longer signs in from a source the
account does not know (accounts/throttle.py). An account with a second factor goes on with it; an
account without one used to wait out the cool-off. Now its owner confirms with an 8-digit code
mailed to the account's address: whoever holds the password but not the mailbox stays out, and
the owner learns that someone has the password (the mail says so, with the address and browser).

The code is kept as a keyed digest in the waiting sign-in's session (shared by every node), bound to
the account, for as long as the sign-in waits (LOGINSVC_MFA_PENDING_SECONDS), with MAX_TRIES wrong entries; each entry is also counted by the
brute-force counters like a password. It is not a second factor: the sign-in's `amr` stays the
password's (a product that requires one still asks for it). Mails are bounded by the step-up budget
(ACCOUNT_STEP_UP_CHECKS per window), which every password step that could send one spends.
"""
from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest

from loginsvc import conf
from loginsvc.mail import notices
from loginsvc.selfservice import codes  # the mailed codes of self-service: the same making, keeping, reading

EMAIL = "email"  # the method, as POST /api/login lists it and POST /api/login/mfa takes it
STATE = "_mfa_mailed_code"
MAX_TRIES = 5


PURPOSE = "sign-in-confirmation"
parse = codes.parse  # the code typed: 8 ASCII digits, spaces and hyphens dropped (as a recovery code)


def send(request: HttpRequest, user: Any, ip: str) -> None:
    """Make a code for this browser's waiting sign-in and queue it to the account's address."""
    code, seconds = codes.new_code(), conf.get("MFA_PENDING_SECONDS")
    request.session[STATE] = {"user_id": user.pk, "digest": codes.digest(PURPOSE, str(user.pk), code), "tries": 0,
                              "until": time.time() + seconds}  # the waiting sign-in ends then anyway
    notices.sign_in_code(user, code, ip, request.META.get("HTTP_USER_AGENT", ""), max(1, seconds // 60))


def waiting(request: HttpRequest, user: Any) -> bool:
    """Whether this browser waits for a mailed code of `user`'s that can still be entered."""
    state = request.session.get(STATE)
    return (isinstance(state, dict) and state.get("user_id") == user.pk and time.time() < state.get("until", 0)
            and state.get("tries", MAX_TRIES) < MAX_TRIES)


def accept(request: HttpRequest, user: Any, code: str) -> bool:
    """Whether `code` is the one mailed for this browser's waiting sign-in of `user`; spent when it is,
    and a wrong one uses up one of MAX_TRIES."""
    if not waiting(request, user):
        return False
    state = request.session[STATE]
    if codes.matches(state["digest"], PURPOSE, str(user.pk), code):
        del request.session[STATE]
        return True
    request.session[STATE] = {**state, "tries": state["tries"] + 1}
    return False
