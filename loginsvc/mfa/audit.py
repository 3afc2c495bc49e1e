"""Second factors' decisions and changes as loginsvc.audit lines: never a secret, a code or a digest."""
from __future__ import annotations

import logging

from loginsvc.accounts.audit import account_tag

log = logging.getLogger("loginsvc.audit")


def required(user_id: int, ip: str, channel: str) -> None:
    """The password was right; the sign-in waits for a second factor."""
    log.info("login: second factor required", extra={"user_id": user_id, "client_ip": ip, "channel": channel})


def factor_failure(email: str, ip: str, channel: str, method: str) -> None:
    """A wrong, replayed or spent code after a correct password (someone may hold the password)."""
    log.warning("login: second factor failed", extra={"account": account_tag(email), "client_ip": ip,
                                                      "channel": channel, "method": method})


def factor_success(user_id: int, ip: str, channel: str, method: str, left: int | None = None) -> None:
    extra = {"user_id": user_id, "client_ip": ip, "channel": channel, "method": method}
    if left is not None:  # a recovery code: how many the account has left
        extra["recovery_codes_left"] = left
    log.info("login: second factor accepted", extra=extra)


def changed(user_id: int, ip: str, what: str) -> None:
    """An enrolment, a removal or a new set of recovery codes, by the signed-in user."""
    log.info("mfa: " + what, extra={"user_id": user_id, "client_ip": ip})


def counter_went_back(user_id: int, ip: str, channel: str, passkey_id: int, stored: int, seen: int) -> None:
    """A passkey signed with a counter that did not go up: its key has been copied (W3C WebAuthn
    §6.1.1). Refused, and an alert: an error line, the metric behind LoginPasskeyCounterWentBack, and
    a Sentry message (sentry_sdk does nothing unless SENTRY_DSN set it up)."""
    import sentry_sdk

    from loginsvc.observability.metrics import PASSKEY_COUNTER_REGRESSIONS

    PASSKEY_COUNTER_REGRESSIONS.labels(channel).inc()
    log.error("login: passkey sign counter went back; refused", extra={
        "user_id": user_id, "client_ip": ip, "channel": channel, "passkey_id": passkey_id, "stored_count": stored, "seen_count": seen})
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("user_id", user_id)
        scope.set_extra("passkey_id", passkey_id)
        sentry_sdk.capture_message("login: a passkey's sign counter went back (copied key?)", level="error")
