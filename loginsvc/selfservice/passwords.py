"""Changing one's password: the current one first (counted like a sign-in), the new one as at sign-up, then every other sign-in ends.

The policy is Django's validators as configured (at least 12 characters, not one of the 20,000
passwords most common in breaches, which Django ships as a local list: no network call), also
checked against the account's own address. Saving the new hash ends every session and every product
sign-in of the account, on every node (models.User.save → accounts/sign_ins.py: tokens revoked,
back-channel logouts queued); this browser's session alone is carried over to the new hash. The
owner gets a notice by mail, queued in the same transaction.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest

from loginsvc.accounts.authentication import Outcome, confirm_password
from loginsvc.accounts import session_registry
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.forms import MAX_PASSWORD_LENGTH
from loginsvc.accounts.models import User
from loginsvc.mail import notices
from loginsvc.selfservice import audit


class Result(enum.Enum):
    CHANGED = "changed"
    WRONG = "wrong"        # the current password is not right (401)
    LOCKED = "locked"      # throttled (429)
    WEAK = "weak"          # the new one is not allowed (400, problems)


@dataclass(frozen=True)
class Answer:
    result: Result
    retry_after: int = 0
    problems: tuple[str, ...] = ()


def problems_of(password: str, user: User | None) -> tuple[str, ...]:
    """Why `password` may not be used (empty: it may)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return (f"This password is too long (at most {MAX_PASSWORD_LENGTH} characters).",)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        return tuple(exc.messages)
    return ()


def change(request: HttpRequest, current: str, new: str, channel: str) -> Answer:
    """Change the signed-in user's password from `current` to `new`."""
    user = request.user
    checked = confirm_password(request, user, current, channel)
    if checked.outcome is Outcome.LOCKED:
        return Answer(Result.LOCKED, retry_after=checked.retry_after)
    if checked.outcome is not Outcome.SUCCESS:
        return Answer(Result.WRONG)
    problems = problems_of(new, user) or (("The new password must differ from the current one.",) if new == current else ())
    if problems:
        return Answer(Result.WEAK, problems=problems)
    ip = client_ip(request)
    with transaction.atomic():
        user.set_password(new)
        user.save()  # ends every session and product sign-in of the account, this one's too ...
        notices.password_changed(user, ip, "changed")
    update_session_auth_hash(request, user)  # ... but this browser stays signed in, on a new key
    session_registry.follow(request)
    audit.password_changed(user.pk, ip)
    return Answer(Result.CHANGED)
