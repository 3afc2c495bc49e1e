"""OpenID Connect Back-Channel Logout 1.0 delivery: logout tokens POSTed from the outbox until each product confirms.

A logout writes LogoutDelivery rows in its own transaction (sso/logout.py); the outbox machinery
(loginsvc/outbox.py: claims, leases, back-off, a thread per worker) delivers them afterwards, so a
product that is down neither blocks the user's sign-out nor loses it. What is particular to logouts:

- delivery (§2.5): POST logout_token=<JWT> form-encoded, no redirects followed; 200 or 204 is
  delivered, anything else (and a connection error or timeout) is retried, up to
  BACKCHANNEL_MAX_BACKOFF_SECONDS apart, until BACKCHANNEL_GIVE_UP_SECONDS after the logout, then
  dropped with a warning; the rows of a product wait while that product fails;
- the logout token (§2.4) is signed at each attempt (fresh iat and exp, the row's jti), with
  the key ring's current key, so a retry days later is not refused as expired.
"""
from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.utils import timezone
from jwcrypto import jwt
from oauth2_provider.settings import oauth2_settings

from loginsvc import conf, outbox
from loginsvc.sso import housekeeping, keys
from loginsvc.sso.models import LogoutDelivery

log = logging.getLogger("loginsvc.sso.backchannel")

EVENT = "http://schemas.openid.net/event/backchannel-logout"
TOKEN_SECONDS = 120                   # exp - iat of a logout token (§2.4 recommends at most two minutes)
KEEP_DELIVERED = timedelta(days=1)    # delivered rows stay this long, for audit, then the loop deletes them
MAX_RESPONSE = 4096                   # bytes of a product's answer read (and ignored) before closing


# --- the logout token (§2.4) ---------------------------------------------------------------------
def logout_token(row: LogoutDelivery, client_id: str, now: datetime | None = None) -> str:
    """A signed logout token for `row`: fresh iat/exp, the row's jti (the same at every attempt)."""
    iat = int((now or timezone.now()).timestamp())
    claims: dict[str, Any] = {
        "iss": oauth2_settings.OIDC_ISS_ENDPOINT, "aud": client_id, "iat": iat, "exp": iat + TOKEN_SECONDS,
        "jti": str(row.jti), "events": {EVENT: {}}, "sub": row.sub,
    }
    if row.sid:
        claims["sid"] = row.sid
    key = keys.ring().signing_key()
    token = jwt.JWT(header={"alg": keys.ALGORITHM, "typ": "logout+jwt", "kid": key.kid}, claims=json.dumps(claims))
    token.make_signed_token(key.private)
    return token.serialize()


# --- one HTTP attempt (§2.5) ---------------------------------------------------------------------
class DeliveryFailed(Exception):
    """An attempt that did not reach a 200/204: the reason is short and never contains the token."""


def post(uri: str, token: str, timeout: float) -> int:
    """POST the token to `uri`; the status code. http.client follows no redirects: a 3xx is a failure."""
    parts = urlsplit(uri)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise DeliveryFailed("not an http(s) URI")
    try:
        port = parts.port
    except ValueError:
        raise DeliveryFailed("bad port in the URI") from None
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    body = urlencode({"logout_token": token})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "*/*",
               "Cache-Control": "no-store", "User-Agent": "loginsvc-backchannel-logout"}
    try:
        conn.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body, headers)
        response = conn.getresponse()
        response.read(MAX_RESPONSE)
        return response.status
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeout, TLS, garbage
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:200]) from None
    finally:
        conn.close()


# --- the outbox -----------------------------------------------------------------------------------
def _deliver(row: LogoutDelivery, now: datetime) -> outbox.Attempted:
    """One POST of a fresh logout token for `row`."""
    status: int | None = None
    try:
        status = post(row.uri, logout_token(row, row.application.client_id, now),
                      float(conf.get("BACKCHANNEL_TIMEOUT_SECONDS")))
        error = "" if status in {200, 204} else f"HTTP {status}"
    except DeliveryFailed as exc:
        error = str(exc)
    return outbox.Attempted(outbox.Result.RETRY if error else outbox.Result.DELIVERED, error, {"status": status})


def _fields(row: LogoutDelivery) -> dict[str, Any]:
    return {"client_id": row.application.client_id, "jti": str(row.jti), "attempts": row.attempts}


def _give_up(row: LogoutDelivery, now: datetime, error: str) -> None:
    LogoutDelivery.objects.filter(pk=row.pk).delete()
    log.warning("backchannel logout: given up, dropped", extra={
        **_fields(row), "age_seconds": int((now - row.created).total_seconds()), "last_error": error})


def _tidy() -> None:
    purge()
    housekeeping.tidy()


LOGOUTS = outbox.Outbox(
    name="backchannel logout", model=LogoutDelivery, deliver=_deliver, give_up=_give_up,
    give_up_seconds=lambda: conf.get("BACKCHANNEL_GIVE_UP_SECONDS"),
    max_backoff_seconds=lambda: conf.get("BACKCHANNEL_MAX_BACKOFF_SECONDS"),
    attempt_seconds=lambda: 3 * float(conf.get("BACKCHANNEL_TIMEOUT_SECONDS")),  # connect, send, read
    log=log, log_fields=_fields, group="application_id", select_related=("application",), tidy=_tidy)
Counts = outbox.Counts


def backoff(attempts: int, rand: float | None = None) -> float:
    return outbox.backoff(LOGOUTS, attempts, rand)


def claim(pk: int, now: datetime) -> datetime | None:
    return outbox.claim(LOGOUTS, pk, now)


def attempt(pk: int, now: datetime | None = None) -> str | None:
    return outbox.attempt(LOGOUTS, pk, now)


def run(now: datetime | None = None, stopping: threading.Event | None = None) -> Counts:
    """One pass over every logout due now; a product that fails waits for the next pass."""
    return outbox.run(LOGOUTS, now, stopping)


def purge(now: datetime | None = None) -> int:
    """Delete rows delivered more than KEEP_DELIVERED ago; how many."""
    deleted, _ = LogoutDelivery.objects.filter(delivered__lt=(now or timezone.now()) - KEEP_DELIVERED).delete()
    return deleted


def anything_due(now: datetime | None = None) -> bool:
    return outbox.anything_due(LOGOUTS, now)


def deliver_due(now: datetime | None = None) -> int:
    """Deliver every due row now, in this thread (tests, the command); how many were delivered."""
    purge(now)
    return run(now).delivered


# --- the per-process worker thread -----------------------------------------------------------------
def Worker() -> outbox.Worker:  # noqa: N802 - a worker of this outbox (the command runs its loop)
    return outbox.Worker(LOGOUTS)


_worker = Worker()


def start() -> None:
    """Run this process's delivery thread (gunicorn's post_worker_init): kick() works from now on."""
    _worker.start()


def stop(timeout: float | None = None) -> bool:
    """Stop it (gunicorn's worker_exit), letting an attempt in flight finish."""
    return _worker.stop(timeout)


def kick() -> None:
    """A logout just committed: deliver it soon, without blocking the caller. A no-op in a process
    that never called start() (manage.py, pytest): a node's thread finds the row within a second."""
    _worker.kick()
