"""The login flow shared by the HTML form and the JSON API: throttle, verify, rotate the session.

An account with a second factor signs in in two steps (mfa/pending.py): the password, then a code;
each step is counted by the same brute-force counters (throttle.py), and only the second signs in.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from django.contrib import auth
from django.http import HttpRequest

from loginsvc import conf
from loginsvc.accounts import audit, known_sources, sessions, throttle
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.forms import MAX_PASSWORD_LENGTH
from loginsvc.accounts.models import User, normalise_email
from loginsvc.mfa import audit as mfa_audit
from loginsvc.mfa import factors, pending, recovery, totp
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
    MFA_REQUIRED = "mfa_required"  # the password was right; a second factor is due (mfa/pending.py)


@dataclass(frozen=True)
class LoginResult:
    outcome: Outcome
    user: User | None = None
    retry_after: int = 0
    refused_by: str = ""  # the scope of the lock that refused a LOCKED attempt
    failed_since_last_login: int = 0  # on SUCCESS: attempts on the account since its last sign-in
    methods: tuple[str, ...] = ()  # on MFA_REQUIRED: the account's second factors (mfa/factors.py)


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


def _counted(request: HttpRequest, email: str, ip: str, channel: str) -> tuple[throttle.Attempt, LoginResult | None]:
    """Count one attempt (a password or a code) before it is checked: the attempt, and the LOCKED
    result to answer when a lock refuses it (logged, counted in the metrics), else None."""
    attempt = _begin(request, email, ip)
    _report_locks(attempt, email, ip)
    if attempt.allowed:
        return attempt, None
    LOGINS.labels(Outcome.LOCKED.value, channel).inc()
    audit.refused(email, ip, channel, attempt.refused_by, attempt.retry_after)
    return attempt, LoginResult(Outcome.LOCKED, retry_after=attempt.retry_after, refused_by=attempt.refused_by)


def locked_message(result: LoginResult) -> str:
    """What a page says to a LOCKED attempt: the account-wide step-up has its own advice."""
    return ACCOUNT_LOCKED_ERROR if result.refused_by == "account" else LOCKED_ERROR


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
    attempt, locked = _counted(request, email, ip, channel)  # before the password is checked
    if locked is not None:
        return locked

    user = auth.authenticate(request, username=email, password=password)
    if user is None:
        LOGINS.labels(Outcome.FAILURE.value, channel).inc()
        audit.failure(email, ip, channel)
        return LoginResult(Outcome.FAILURE)

    methods = factors.methods_of(user)
    if methods:
        throttle.gave_password(attempt)
        pending.begin(request, user, amr=["pwd"])
        LOGINS.labels(Outcome.MFA_REQUIRED.value, channel).inc()
        mfa_audit.required(user.pk, ip, channel)
        return LoginResult(Outcome.MFA_REQUIRED, user=user, methods=tuple(methods))
    failed = throttle.succeeded(attempt)
    _sign_in(request, user, ip, channel, ["pwd"])
    return LoginResult(Outcome.SUCCESS, user=user, failed_since_last_login=failed)


def _sign_in(request: HttpRequest, user: User, ip: str, channel: str, amr: list[str]) -> None:
    known_sources.remember_network(user, ip)
    auth.login(request, user)  # cycles the session key (ASVS 3.2.1)
    sessions.start(request, amr)
    LOGINS.labels(Outcome.SUCCESS.value, channel).inc()
    audit.success(user.pk, ip, channel)


def _factor_accepted(user: User, method: str, code: str) -> bool:
    """The code is one of the account's factors' and is spent now. Recovery codes count only while
    the account has an app: alone they are not a second factor (factors.methods_of)."""
    device = totp.confirmed_device(user)
    if device is None:
        return False
    return totp.accept(device, code) if method == factors.TOTP else recovery.use(user, code)


def attempt_second_factor(request: HttpRequest, method: str, code: str, channel: str) -> LoginResult:
    """The second step: `code` (already in its method's form: totp.parse_code, recovery.normalise) for
    this browser's waiting sign-in. Counted like a password attempt (a wrong code is a failure for the
    pair, the address and the account); on success the user is signed in with a new session id,
    and a recovery code used is audited with how many are left. No waiting sign-in, or an expired
    one, is a FAILURE, as a wrong code is: the client cannot tell them apart."""
    waiting = pending.current(request)
    if waiting is None:
        return LoginResult(Outcome.FAILURE)
    user, ip = waiting.user, client_ip(request)
    email = normalise_email(user.email)
    attempt, locked = _counted(request, email, ip, channel)
    if locked is not None:
        return locked
    if not _factor_accepted(user, method, code):
        LOGINS.labels(Outcome.FAILURE.value, channel).inc()
        mfa_audit.factor_failure(email, ip, channel, method)
        return LoginResult(Outcome.FAILURE)
    failed = throttle.succeeded(attempt)
    if waiting.counted:  # the password's own attempt was noted too, and is no failure either
        failed = max(0, failed - 1)
    pending.end(request)
    mfa_audit.factor_success(user.pk, ip, channel, method,
                             recovery.remaining(user) if method == factors.RECOVERY else None)
    # RFC 8176: a one-time code (an app's or a recovery code) and, with the password, several factors.
    _sign_in(request, user, ip, channel, [*waiting.amr, "otp", "mfa"])
    return LoginResult(Outcome.SUCCESS, user=user, failed_since_last_login=failed)


def confirm_password(request: HttpRequest, user: User, password: str, channel: str) -> LoginResult:
    """Re-authentication of the signed-in `user` before a sensitive change (removing a second factor,
    new recovery codes): the password checked and counted like a login, without signing in anew."""
    email, ip = normalise_email(user.email), client_ip(request)
    attempt, locked = _counted(request, email, ip, channel)
    if locked is not None:
        return locked
    if len(password) > MAX_PASSWORD_LENGTH or auth.authenticate(request, username=email, password=password) != user:
        audit.failure(email, ip, channel)
        return LoginResult(Outcome.FAILURE)
    throttle.succeeded(attempt)
    return LoginResult(Outcome.SUCCESS, user=user)
