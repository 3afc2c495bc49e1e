"""The login flow shared by the HTML form and the JSON API: throttle, verify, rotate the session."""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from django.contrib import auth
from django.http import HttpRequest

from loginsvc.accounts import sessions, throttle
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.models import User, normalise_email
from loginsvc.observability.metrics import LOCKOUTS, LOGINS

log = logging.getLogger(__name__)

# OWASP: one message for unknown account and wrong password, so neither can be told apart.
GENERIC_ERROR = "Invalid email address or password."
LOCKED_ERROR = "Too many failed attempts. Please wait and try again."


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    LOCKED = "locked"


@dataclass(frozen=True)
class LoginResult:
    outcome: Outcome
    user: User | None = None
    retry_after: int = 0


def attempt_login(request: HttpRequest, username: str, password: str, channel: str) -> LoginResult:
    """Try one login. On success the user is logged in on `request` with a new session id.

    A locked account+IP (or IP) is refused before any password check, so a correct password
    does not help during a lock; the attempt is counted before the check, so parallel guesses
    cannot all slip in under the limit. Unknown accounts still run the hasher (ModelBackend does it)
    so that timing does not reveal which addresses exist.
    """
    email = normalise_email(username)
    ip = client_ip(request)
    attempt = throttle.begin(email, ip)  # counts this attempt before the password is checked
    for scope in attempt.locked_scopes:
        LOCKOUTS.labels(scope).inc()
        log.warning("login: lock set", extra={"scope": scope, "client_ip": ip})
    if not attempt.allowed:
        LOGINS.labels(Outcome.LOCKED.value, channel).inc()
        return LoginResult(Outcome.LOCKED, retry_after=attempt.retry_after)

    user = auth.authenticate(request, username=email, password=password)
    if user is None:
        LOGINS.labels(Outcome.FAILURE.value, channel).inc()
        return LoginResult(Outcome.FAILURE)

    throttle.succeeded(attempt)
    auth.login(request, user)  # cycles the session key (ASVS 3.2.1)
    sessions.start(request)
    LOGINS.labels(Outcome.SUCCESS.value, channel).inc()
    log.info("login: success", extra={"user_id": user.pk, "client_ip": ip})
    return LoginResult(Outcome.SUCCESS, user=user)
