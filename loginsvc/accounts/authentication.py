"""The login flow shared by the HTML form and the JSON API: throttle, verify, rotate the session.

An account with a second factor signs in in two steps (mfa/pending.py): the password, then a code;
each step is counted by the same brute-force counters (throttle.py), and only the second signs in.
During the account-wide step-up such an account still signs in from a new source with both (the
step-up budget, throttle.step_up); an account without a second factor confirms with a code mailed to
it (mfa/mailed_code.py); a wrong password that the budget lets through gets the refusal.
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
from loginsvc.mail import notices
from loginsvc.mfa import audit as mfa_audit
from loginsvc.mfa import ceremonies, factors, mailed_code, passkeys, pending, recovery, totp
from loginsvc.mfa.models import Passkey
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
    detail: str = ""  # on a passkey's FAILURE: which check refused it (no secret in it)


def _begin(request: HttpRequest, email: str, ip: str, known: bool = False,
           step_up: bool = False, second_step: bool = False) -> throttle.Attempt:
    """Count the attempt; sources the account knows are not held by the account-wide lock.

    `known`: the caller already knows the attempt may pass the account lock (a second step that
    came through the step-up). The known device and network (one query each), and with `step_up`
    the step-up budget (throttle.step_up), are consulted only when the account-wide lock has
    refused an attempt, i.e. only under attack; a known source's attempt is then counted again as
    known (count=False: noted once for the "failed attempts" notice).
    `second_step`: a code for a waiting sign-in, whose password step read the locks kept on the
    database during a Redis outage (throttle.begin's `outage_locks`).
    """
    attempt = throttle.begin(email, ip, known=known, outage_locks=not second_step)
    if attempt.refused_by != "account" or known:
        return attempt
    if known_sources.device_knows(request, email) or known_sources.network_knows(email, ip):
        return throttle.begin(email, ip, known=True, count=False)
    return throttle.step_up(email, ip, attempt) if step_up else attempt


def counted(request: HttpRequest, email: str, channel: str, ip: str | None = None,
            known: bool = False) -> tuple[throttle.Attempt, LoginResult | None]:
    """Count one guess at something of the account's other than its password (a mailed recovery code,
    an app password) like a password attempt: the attempt (throttle.succeeded it when right), and the
    LOCKED result to answer when a lock refuses it, else None. `ip`: the guesser's address when it is
    not this request's (a mail server asking for its client). `known`: the account-wide lock does not
    hold it (an app password: 100 random bits, which that lock cannot protect better than the pair and
    address locks, and which must keep working while someone guesses the account's password)."""
    return _counted(request, email, ip or client_ip(request), channel, known=known)


def _counted(request: HttpRequest, email: str, ip: str, channel: str, known: bool = False,
             step_up: bool = False, second_step: bool = False) -> tuple[throttle.Attempt, LoginResult | None]:
    """Count one attempt (a password or a code) before it is checked: the attempt, and the LOCKED
    result to answer when a lock refuses it (logged, counted in the metrics), else None.
    `known`, `step_up`, `second_step`: as for _begin."""
    attempt = _begin(request, email, ip, known=known, step_up=step_up, second_step=second_step)
    _report_locks(attempt, email, ip)
    if attempt.allowed:
        return attempt, None
    return attempt, _refused(attempt, email, ip, channel)


def _refused(refusal: throttle.Attempt, email: str, ip: str, channel: str) -> LoginResult:
    """The LOCKED answer to a refused attempt, logged and counted in the metrics."""
    LOGINS.labels(Outcome.LOCKED.value, channel).inc()
    audit.refused(email, ip, channel, refusal.refused_by, refusal.retry_after)
    return LoginResult(Outcome.LOCKED, retry_after=refusal.retry_after, refused_by=refusal.refused_by)


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
            notices.failed_attempts(email, conf.get("ACCOUNT_FAILURE_LIMIT"))


def attempt_login(request: HttpRequest, username: str, password: str, channel: str) -> LoginResult:
    """Try one login. On success the user is logged in on `request` with a new session id.

    A locked account+IP (or IP, or an account-wide lock for an unknown source) is refused before
    any password check, so a correct password does not help during a lock; the attempt is
    counted before the check, so parallel guesses cannot all slip in under the limit. Unknown
    accounts still run the hasher (ModelBackend does it) so that timing does not reveal which
    addresses exist. Every decision is logged (audit.py).

    The one exception is the account-wide step-up's budget (throttle.step_up): such an attempt is
    checked, and a correct password goes on to a second step: the account's second factor, or else a
    code mailed to the account (mailed_code.py); a wrong password or an unknown account gets the
    refusal it would have got without the budget.
    """
    email = normalise_email(username)
    ip = client_ip(request)
    attempt, locked = _counted(request, email, ip, channel, step_up=True)  # before the password is checked
    if locked is not None:
        return locked

    user = auth.authenticate(request, username=email, password=password)
    methods = factors.methods_of(user) if user is not None else []
    if attempt.step_up_refusal is not None and not methods:
        if user is None:
            return _refused(attempt.step_up_refusal, email, ip, channel)  # counted as a failure: begin did
        methods = [mailed_code.EMAIL]  # no factor of its own: its owner confirms with a mailed code
    if user is None:
        LOGINS.labels(Outcome.FAILURE.value, channel).inc()
        audit.failure(email, ip, channel)
        return LoginResult(Outcome.FAILURE)

    if methods:
        throttle.gave_password(attempt)
        pending.begin(request, user, amr=["pwd"], via_account_step_up=attempt.step_up_refusal is not None)
        if methods == [mailed_code.EMAIL]:
            mailed_code.send(request, user, ip)
        LOGINS.labels(Outcome.MFA_REQUIRED.value, channel).inc()
        mfa_audit.required(user.pk, ip, channel)
        return LoginResult(Outcome.MFA_REQUIRED, user=user, methods=tuple(methods))
    failed = throttle.succeeded(attempt)
    _sign_in(request, user, ip, channel, ["pwd"])
    return LoginResult(Outcome.SUCCESS, user=user, failed_since_last_login=failed)


def _sign_in(request: HttpRequest, user: User, ip: str, channel: str, amr: list[str],
             key_is_new: bool = False) -> None:
    """Sign `user` in on this browser with a new session key (ASVS 3.2.1: django.contrib.auth.login
    cycles it). `key_is_new`: the second step of a sign-in, whose key was made after the password was
    right (pending.begin), so nobody can have fixed it; login() keeps it instead of making one more
    (a session row written and one deleted, per sign-in with a second factor)."""
    new_network, returning = known_sources.remember_network(user, ip), user.last_login is not None
    if new_network and returning and not known_sources.device_knows(request, user.email):
        # Neither this device nor this network has signed in to the account before: its owner hears of it.
        notices.new_sign_in(user, ip, request.META.get("HTTP_USER_AGENT", ""))
    if key_is_new:  # what login() checks to keep a session: already this user's, with this user's hash
        request.session[auth.SESSION_KEY] = user._meta.pk.value_to_string(user)
        request.session[auth.HASH_SESSION_KEY] = user.get_session_auth_hash()
    auth.login(request, user)
    sessions.start(request, amr)
    LOGINS.labels(Outcome.SUCCESS.value, channel).inc()
    audit.success(user.pk, ip, channel, amr)


def factor_accepted(request: HttpRequest, user: User, method: str, code: object, ip: str,
                     channel: str) -> list[str] | None:
    """The RFC 8176 `amr` of the factor when `code` is one of the account's and is spent now, else
    None: an app's code, a recovery code (one-time codes both: "otp"), or a passkey's answer to this
    browser's second-step ceremony. Recovery codes count only while the account has a factor of its
    own: alone they are not one (factors.methods_of)."""
    if method == factors.WEBAUTHN:
        ceremony = ceremonies.take(request, ceremonies.SECOND_STEP, code)
        if ceremony is None or ceremony.user_id != user.pk:
            return None
        used = _passkey(ceremony, code, passkeys.find(code), ip, channel)
        return used.amr if isinstance(used, passkeys.Used) else None
    if method == mailed_code.EMAIL:  # a confirmation, not a factor (no amr): never one where a factor is due
        return [] if not factors.has_factor(user) and mailed_code.accept(request, user, str(code)) else None
    if method == factors.TOTP:
        device = totp.confirmed_device(user)
        return ["otp"] if device is not None and totp.accept(device, str(code)) else None
    return ["otp"] if factors.has_factor(user) and recovery.use(user, str(code)) else None


def _passkey(ceremony: ceremonies.Ceremony, credential: object, passkey: Passkey | None, ip: str,
             channel: str) -> passkeys.Used | str:
    """The passkey that answered `ceremony`, or why not. A counter that went back is also audited
    and alerted on: the answer was signed by the real key, so a copy of it is in use."""
    try:
        return passkeys.authenticate(ceremony, credential, passkey)
    except passkeys.CounterWentBack as exc:
        passkey = exc.passkey
        mfa_audit.counter_went_back(passkey.user_id, ip, channel, passkey.pk, passkey.sign_count, exc.seen)
        return str(exc)
    except passkeys.Refused as exc:
        return str(exc)


NO_CEREMONY = "No passkey sign-in is waiting in this browser (it expired or was used): start again."


def attempt_passkey(request: HttpRequest, credential: object, channel: str) -> LoginResult:
    """Sign in with a passkey and no password: its answer to this browser's sign-in ceremony.

    A passkey with user verification is two factors at once, so it signs in without a second step,
    and it is no password guess: the account-wide step-up does not hold it (counted as from a known
    source), while the pair and address locks bound forged answers like wrong passwords. Every
    refusal says which check failed (`detail`)."""
    ceremony = ceremonies.take(request, ceremonies.SIGN_IN, credential)
    if ceremony is None:
        return LoginResult(Outcome.FAILURE, detail=NO_CEREMONY)
    ip = client_ip(request)
    passkey = passkeys.find(credential)
    email = normalise_email(passkey.user.email) if passkey else passkeys.UNKNOWN_OWNER
    attempt, locked = _counted(request, email, ip, channel, known=True)
    if locked is not None:
        return locked
    used = _passkey(ceremony, credential, passkey, ip, channel)
    if not isinstance(used, passkeys.Used):
        LOGINS.labels(Outcome.FAILURE.value, channel).inc()
        mfa_audit.factor_failure(email, ip, channel, factors.WEBAUTHN)
        return LoginResult(Outcome.FAILURE, detail=used)
    user = used.passkey.user
    failed = throttle.succeeded(attempt)
    pending.end(request)
    mfa_audit.factor_success(user.pk, ip, channel, factors.WEBAUTHN)
    _sign_in(request, user, ip, channel, [*used.amr, "mfa"])
    return LoginResult(Outcome.SUCCESS, user=user, failed_since_last_login=failed)


def attempt_second_factor(request: HttpRequest, method: str, code: object, channel: str) -> LoginResult:
    """The second step: `code` (already in its method's form: totp.parse_code, recovery.normalise) for
    this browser's waiting sign-in. Counted like a password attempt (a wrong code is a failure for the
    pair, the address and the account); on success the user is signed in on the session key made
    when the password was right, and a recovery code used is audited with how many are left. No waiting sign-in, or an expired
    one, is a FAILURE, as a wrong code is: the client cannot tell them apart. A sign-in whose password
    came through the account-wide step-up is counted as from a known source: the account lock would
    refuse its code, while the pair and address locks still bound the code guesses."""
    waiting = pending.current(request)
    if waiting is None:
        return LoginResult(Outcome.FAILURE)
    user, ip = waiting.user, client_ip(request)
    email = normalise_email(user.email)
    attempt, locked = _counted(request, email, ip, channel, known=waiting.via_account_step_up, second_step=True)
    if locked is not None:
        return locked
    amr = factor_accepted(request, user, method, code, ip, channel)
    if amr is None:
        LOGINS.labels(Outcome.FAILURE.value, channel).inc()
        mfa_audit.factor_failure(email, ip, channel, method)
        return LoginResult(Outcome.FAILURE)
    failed = throttle.succeeded(attempt)
    if waiting.counted:  # the password's own attempt was noted too, and is no failure either
        failed = max(0, failed - 1)
    pending.end(request)
    mfa_audit.factor_success(user.pk, ip, channel, method,
                             recovery.remaining(user) if method == factors.RECOVERY else None)
    if method == factors.RECOVERY:  # the owner hears of it: the code may have been someone else's find
        notices.account_changed(user, ip, "recovery code used")
    if waiting.via_account_step_up:
        audit.step_up_sign_in(email, user.pk, ip, channel, method)
    # RFC 8176: the password's, the factor's, and as they are several: "mfa" (a mailed code adds none).
    _sign_in(request, user, ip, channel, [*waiting.amr, *amr, "mfa"] if amr else list(waiting.amr), key_is_new=True)
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
