"""Authentication decisions as structured log lines (ASVS 7.2.1), naming accounts only by a keyed hash.

Each line carries the client address, the channel (form, api; oidc later) and `account`, an
HMAC-SHA256 of the normalised email keyed from SECRET_KEY (salted_hmac): the same account always
gives the same tag, so its history can be followed and alerted on, but the log does not reveal
who it is without the key. Never logged: the email, the password, any session id or cookie.
To find an account's tag: `python manage.py shell -c "from loginsvc.accounts.audit import
account_tag; print(account_tag('ann@example.com'))"`.
"""
from __future__ import annotations

import logging

from django.http import HttpRequest
from django.utils.crypto import salted_hmac

log = logging.getLogger("loginsvc.audit")
TAG_SALT = "loginsvc.accounts.audit.account"


def account_tag(email: str, purpose: str = TAG_SALT) -> str:
    """The keyed hash of an account (96 bits of HMAC-SHA256 under a key derived from SECRET_KEY)."""
    return salted_hmac(purpose, email, algorithm="sha256").hexdigest()[:24]


def failure(email: str, ip: str, channel: str) -> None:
    """A password was checked and was wrong (or the account is unknown: the same to the client)."""
    log.info("login: failure", extra={"account": account_tag(email), "client_ip": ip, "channel": channel})


def refused(email: str, ip: str, channel: str, scope: str, retry_after: int) -> None:
    """An attempt refused by a lock before any password check."""
    log.info("login: refused", extra={"account": account_tag(email), "client_ip": ip, "channel": channel,
                                      "scope": scope, "retry_after": retry_after})


def lock_set(email: str, ip: str, scope: str, flag: int) -> None:
    """This attempt set a lock. The account-wide delays are routine under attack (info); the
    other locks are warnings; the account's step-up is an alert (account_alert)."""
    level = logging.INFO if scope == "account" and flag == 1 else logging.WARNING
    log.log(level, "login: lock set", extra={"account": account_tag(email), "client_ip": ip, "scope": scope})


def account_alert(email: str, ip: str, limit: int) -> None:
    """The account passed its account-wide failure limit: a warning line and a Sentry message
    (sentry_sdk does nothing unless SENTRY_DSN set it up)."""
    import sentry_sdk

    tag = account_tag(email)
    log.warning("login: account passed the failure limit; step-up on", extra={
        "account": tag, "client_ip": ip, "limit": limit})
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("account", tag)
        scope.set_extra("limit", limit)
        sentry_sdk.capture_message("login: an account passed its failure limit (step-up on)", level="warning")


def step_up_sign_in(email: str, user_id: int, ip: str, channel: str, method: str) -> None:
    """A sign-in from a source the account did not know, during its account-wide step-up, with the
    password and a second factor (throttle.step_up): the source is known from now on. A warning:
    the owner, or someone holding both factors."""
    log.warning("login: signed in through the account step-up with a second factor", extra={
        "account": account_tag(email), "user_id": user_id, "client_ip": ip, "channel": channel, "method": method})


def success(user_id: int, ip: str, channel: str, amr: list[str] | None = None) -> None:
    """A sign-in; `amr`: how (RFC 8176 values, e.g. pwd otp mfa), so one line tells the whole sign-in."""
    extra = {"user_id": user_id, "client_ip": ip, "channel": channel}
    if amr:
        extra["amr"] = " ".join(amr)
    log.info("login: success", extra=extra)


def logout(request: HttpRequest, ip: str) -> None:
    """A session ended at the user's request (only logged when someone was signed in)."""
    if request.user.is_authenticated:
        log.info("logout", extra={"user_id": request.user.pk, "client_ip": ip})
