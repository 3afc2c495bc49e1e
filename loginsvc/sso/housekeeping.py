"""Rows nobody needs any more: sign-ins past every lifetime, retry receipts past their window, device grants, the
toolkit's expired tokens, expired sessions with their session records, and old audit trail rows.

Run by every node's back-channel thread now and then (backchannel.Worker.loop); the deletes are
idempotent, so several nodes doing it at once only repeat each other.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from oauth2_provider.models import clear_expired

from loginsvc import conf
from loginsvc.accounts import session_registry
from loginsvc.staff import trail
from loginsvc.sso import device, refresh_retry
from loginsvc.sso.models import SignIn

log = logging.getLogger(__name__)
CODE_GRACE_SECONDS = 60   # a code's sign-in outlives the code a little (a token request in flight)
TIDY_SECONDS = 600.0
_last = 0.0


def stale_sign_ins(now: float | None = None) -> int:
    """Delete sign-ins whose code was never redeemed, and those older than the central session may live
    (their refresh tokens are refused by then: validators.py); how many."""
    now = time.time() if now is None else now
    # A device's allowed grant is collected within its own lifetime (sso/device.py), a code within the code's.
    waits = max(conf.get("AUTH_CODE_SECONDS"), conf.get("DEVICE_CODE_SECONDS"))
    cutoff = datetime.fromtimestamp(now - waits - CODE_GRACE_SECONDS, tz=timezone.utc)
    unredeemed = SignIn.objects.filter(token_family__isnull=True, created__lt=cutoff)
    too_old = (SignIn.objects.filter(offline=False, auth_time__lt=now - conf.get("SESSION_MAX_SECONDS"))
               | SignIn.objects.filter(offline=True, auth_time__lt=now - conf.get("OFFLINE_MAX_SECONDS")))
    return unredeemed.delete()[0] + too_old.delete()[0]


def dead_refresh_tokens(now: float | None = None) -> int:
    """Delete refresh tokens (revoked or not) older than the central session may live, except those of
    sign-ins granted offline_access: none of them can be used any more (token_rules.refresh_sign_in), and
    the toolkit's own clear_expired keeps them for the offline lifetime, months; how many."""
    from oauth2_provider.models import RefreshToken

    now = time.time() if now is None else now
    cutoff = datetime.fromtimestamp(now - conf.get("SESSION_MAX_SECONDS"), tz=timezone.utc)
    offline = SignIn.objects.filter(offline=True).exclude(token_family=None).values("token_family")
    return RefreshToken.objects.filter(created__lt=cutoff).exclude(token_family__in=offline).delete()[0]


def tidy(force: bool = False) -> None:
    """Both clean-ups, at most every TIDY_SECONDS per process (the caller logs a failure and goes on)."""
    global _last
    if not force and time.monotonic() - _last < TIDY_SECONDS:
        return
    _last = time.monotonic()
    removed = stale_sign_ins()
    refresh_retry.tidy()
    device.tidy()
    clear_expired()  # django-oauth-toolkit: expired grants, access, refresh and ID tokens
    dead_refresh_tokens()
    session_registry.clear_expired()  # Django's `clearsessions`, and the sessions page's records of them
    trail.tidy()  # the admin's audit trail past AUDIT_TRAIL_DAYS
    if removed:
        log.info("sso housekeeping: stale sign-ins removed", extra={"count": removed})
