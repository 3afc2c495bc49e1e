"""The login flow shared by the HTML form and the JSON API: throttle, verify, rotate the session."""
from __future__ import annotations

import enum
from dataclasses import dataclass

from django.contrib import auth
from django.http import HttpRequest

from loginsvc import conf
from loginsvc.accounts import audit, known_sources, sessions, throttle
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.models import User, normalise_email
from loginsvc.observability.metrics import LOCKOUTS, LOGINS

# OWASP: one message for unknown account and wrong password, so neither can be told apart.
GENERIC_ERROR = "Invalid email address or password."
LOCKED_ERROR = "Too many failed attempts. Please wait and try again."
# The account-wide step-up: the same for unknown accounts, so it tells nobody which ones exist.
ACCOUNT_LOCKED_ERROR = ("Too many failed attempts on this account. Sign in from a device or network "
                        "you have used before, or wait and try again.")


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    LOCKED = "locked"


@dataclass(frozen=True)
class LoginResult:
    outcome: Outcome
    user: User | None = None
    retry_after: int = 0
    refused_by: str = ""  # the scope of the lock that refused a LOCKED attempt
    failed_since_last_login: int = 0  # on SUCCESS: attempts on the account since its last sign-in


def _begin(request: HttpRequest, email: str, ip: str) -> throttle.Attempt:
    """Count the attempt; sources the account knows are not held by the account-wide lock.

    The device cookie is checked first (no I/O). The known-network query runs only when the
    account-wide lock has refused an attempt from an unknown device, i.e. only under attack.
    """
    known = known_sources.device_knows(request, email)
    attempt = throttle.begin(email, ip, known=known)
    if attempt.refused_by == "account" and not known and known_sources.network_knows(email, ip):
        attempt = throttle.begin(email, ip, known=True, count=False)
    return attempt


def _report_locks(attempt: throttle.Attempt, email: str, ip: str) -> None:
    for scope, flag in attempt.locks:
        if flag == 3:
            continue  # the account's step-up, renewed by a known source's failure: already reported
        LOCKOUTS.labels("account_delay" if scope == "account" and flag == 1 else scope).inc()
        audit.lock_set(email, ip, scope, flag)
        if scope == "account" and flag == 2:
            audit.account_alert(email, ip, conf.get("ACCOUNT_FAILURE_LIMIT"))


def attempt_login(request: HttpRequest, username: str, password: str, channel: str) -> LoginResult:
    """Try one login. On success the user is logged in on `request` with a new session id.

    A locked account+IP (or IP, or an account-wide lock for an unknown source) is refused before
    any password check, so a correct password does not help during a lock; the attempt is
    counted before the check, so parallel guesses cannot all slip in under the limit. Unknown
    accounts still run the hasher (ModelBackend does it) so that timing does not reveal which
    addresses exist. Every decision is logged (audit.py).
    """
    email = normalise_email(username)
    ip = client_ip(request)
    attempt = _begin(request, email, ip)  # counts this attempt before the password is checked
    _report_locks(attempt, email, ip)
    if not attempt.allowed:
        LOGINS.labels(Outcome.LOCKED.value, channel).inc()
        audit.refused(email, ip, channel, attempt.refused_by, attempt.retry_after)
        return LoginResult(Outcome.LOCKED, retry_after=attempt.retry_after, refused_by=attempt.refused_by)

    user = auth.authenticate(request, username=email, password=password)
    if user is None:
        LOGINS.labels(Outcome.FAILURE.value, channel).inc()
        audit.failure(email, ip, channel)
        return LoginResult(Outcome.FAILURE)

    failed = throttle.succeeded(attempt)
    known_sources.remember_network(user, ip)
    auth.login(request, user)  # cycles the session key (ASVS 3.2.1)
    sessions.start(request)
    LOGINS.labels(Outcome.SUCCESS.value, channel).inc()
    audit.success(user.pk, ip, channel)
    return LoginResult(Outcome.SUCCESS, user=user, failed_since_last_login=failed)
