"""OpenID Connect Back-Channel Logout 1.0 delivery: logout tokens POSTed from the outbox until each product confirms.

Why an outbox and a lease, not a POST from the logout request: the logout must not wait on a
product (a product that is down would block or fail the user's sign-out), and a logout must not be
lost when a product is down or a node dies, so the logout writes LogoutDelivery rows in its own
transaction (sso/logout.py) and this module delivers them afterwards, from any process:

- claiming: a process takes one due row with a conditional UPDATE (due, unclaimed or lease
  expired); the database decides who won on SQLite and PostgreSQL alike, so two processes never
  deliver the same row at once, and a process that dies mid-delivery only delays that row by the
  lease;
- delivery (§2.5): POST logout_token=<JWT> form-encoded, no redirects followed; 200 or 204 is
  delivered, anything else (and a connection error or timeout) is retried with exponential
  back-off and jitter, up to BACKCHANNEL_MAX_BACKOFF_SECONDS apart, until
  BACKCHANNEL_GIVE_UP_SECONDS after the logout, then dropped with a warning;
- the logout token (§2.4) is signed at each attempt (fresh iat and exp, the row's jti), with
  the key ring's current key, so a retry days later is not refused as expired;
- each gunicorn worker runs one daemon thread (start() at worker init, stop() at worker exit)
  that kick() wakes right after a logout commits and that also looks for due rows every second,
  so retries happen while any node runs. Elsewhere (manage.py, pytest) kick() does nothing:
  `manage.py deliver_logouts` or deliver_due() deliver synchronously.
"""
from __future__ import annotations

import http.client
import json
import logging
import random
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone
from jwcrypto import jwt
from oauth2_provider.settings import oauth2_settings

from loginsvc import conf
from loginsvc.sso import housekeeping, keys
from loginsvc.sso.models import LogoutDelivery

log = logging.getLogger("loginsvc.sso.backchannel")

EVENT = "http://schemas.openid.net/event/backchannel-logout"
TOKEN_SECONDS = 120                   # exp - iat of a logout token (§2.4 recommends at most two minutes)
BASE_BACKOFF_SECONDS = 1.0            # first retry after about a second, then 2, 4, 8 ... up to the maximum
KEEP_DELIVERED = timedelta(days=1)    # delivered rows stay this long, for audit, then the loop deletes them
POLL_SECONDS = 1.0                    # how often the worker thread looks for due rows without a kick
PURGE_SECONDS = 60.0                  # how often it deletes delivered rows older than KEEP_DELIVERED
BATCH = 100                           # due rows read per query
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


def backoff(attempts: int, rand: float | None = None) -> float:
    """Seconds until the next attempt after `attempts` failed ones: doubling, capped, jittered
    down by up to 20 % so that the rows of one outage do not all come back at the same instant."""
    ceiling = float(conf.get("BACKCHANNEL_MAX_BACKOFF_SECONDS"))
    delay = min(ceiling, BASE_BACKOFF_SECONDS * 2 ** max(0, attempts - 1))
    return delay * (0.8 + 0.2 * (random.random() if rand is None else rand))


def lease_seconds() -> float:
    """How long a claim lasts: longer than one attempt can take (connect, send, read: each timed out)."""
    return 3 * float(conf.get("BACKCHANNEL_TIMEOUT_SECONDS")) + 5


# --- claiming and recording ------------------------------------------------------------------------
def _due(now: datetime) -> Q:
    return Q(delivered__isnull=True, next_attempt__lte=now) & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))


def claim(pk: int, now: datetime) -> datetime | None:
    """Take row `pk` if it is still due and nobody holds it: the lease's end, or None if another won.

    One conditional UPDATE in autocommit: on SQLite writers are serialised, on PostgreSQL the
    second UPDATE re-checks the WHERE on the row the first one committed, so exactly one wins.
    next_attempt moves to the lease's end too, so the cheap due query skips rows being delivered."""
    until = now + timedelta(seconds=lease_seconds())
    won = LogoutDelivery.objects.filter(_due(now), pk=pk).update(claimed_until=until, next_attempt=until)
    return until if won else None


@dataclass
class Counts:
    """What one pass did (the command's --json output)."""

    delivered: int = 0
    retried: int = 0
    dropped: int = 0
    deferred: int = 0   # not attempted this pass: an earlier row to the same product just failed

    def add(self, other: "Counts") -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _fields(row: LogoutDelivery, **extra: Any) -> dict[str, Any]:
    return {"client_id": row.application.client_id, "jti": str(row.jti), "attempts": row.attempts, **extra}


def _give_up(row: LogoutDelivery, now: datetime) -> None:
    LogoutDelivery.objects.filter(pk=row.pk).delete()
    log.warning("backchannel logout: given up, dropped", extra=_fields(
        row, age_seconds=int((now - row.created).total_seconds()), last_error=row.last_error))


def attempt(pk: int, now: datetime | None = None) -> str | None:
    """Claim row `pk` and try it once: "delivered", "retried", "dropped", or None if not ours to try."""
    given, now = now is not None, now or timezone.now()
    lease = claim(pk, now)
    if lease is None:
        return None
    row = LogoutDelivery.objects.select_related("application").get(pk=pk)
    if now - row.created > timedelta(seconds=conf.get("BACKCHANNEL_GIVE_UP_SECONDS")):
        _give_up(row, now)
        return "dropped"
    row.attempts += 1
    status: int | None = None
    try:
        status = post(row.uri, logout_token(row, row.application.client_id, now),
                      float(conf.get("BACKCHANNEL_TIMEOUT_SECONDS")))
        error = "" if status in {200, 204} else f"HTTP {status}"
    except DeliveryFailed as exc:
        error = str(exc)
    if not error:
        LogoutDelivery.objects.filter(pk=pk).update(delivered=now if given else timezone.now(),
                                                    attempts=row.attempts, claimed_until=None, last_error="")
        log.info("backchannel logout: delivered", extra=_fields(row, status=status))
        return "delivered"
    wait = backoff(row.attempts)
    kept = LogoutDelivery.objects.filter(pk=pk, claimed_until=lease).update(
        attempts=row.attempts, claimed_until=None, last_error=error[:255],
        next_attempt=now + timedelta(seconds=wait))
    log.info("backchannel logout: failed, will retry", extra=_fields(
        row, status=status, error=error, retry_in_seconds=round(wait, 1), lease_kept=bool(kept)))
    return "retried"


def run(now: datetime | None = None, stopping: threading.Event | None = None) -> Counts:
    """One pass over every row due now, oldest id first. After a failure, further rows to that
    product wait for the next pass, so one product that is down costs one timeout per pass, not one
    per row, and the other products' logouts are not held up behind it. `stopping` ends the pass
    between two rows (a worker that exits leaves the rest to the next process)."""
    counts, failed, last = Counts(), set(), 0
    while stopping is None or not stopping.is_set():
        due = list(LogoutDelivery.objects.filter(_due(now or timezone.now()), pk__gt=last)
                   .order_by("pk").values_list("pk", "application_id")[:BATCH])
        for pk, application_id in due:
            last = pk
            if stopping is not None and stopping.is_set():
                break
            if application_id in failed:
                counts.deferred += 1
                continue
            outcome = attempt(pk, now)
            if outcome == "retried":
                failed.add(application_id)
            if outcome:
                setattr(counts, outcome, getattr(counts, outcome) + 1)
        if len(due) < BATCH:
            break
    return counts


def purge(now: datetime | None = None) -> int:
    """Delete rows delivered more than KEEP_DELIVERED ago; how many."""
    deleted, _ = LogoutDelivery.objects.filter(delivered__lt=(now or timezone.now()) - KEEP_DELIVERED).delete()
    return deleted


def anything_due(now: datetime | None = None) -> bool:
    """The loop's cheap question, answered from the (delivered, next_attempt) index."""
    return LogoutDelivery.objects.filter(delivered__isnull=True, next_attempt__lte=now or timezone.now()).exists()


def deliver_due(now: datetime | None = None) -> int:
    """Deliver every due row now, in this thread (tests, the command); how many were delivered."""
    purge(now)
    return run(now).delivered


# --- the per-process worker thread -----------------------------------------------------------------
class Worker:
    """One daemon thread per process: woken by kick(), and looking for due rows every POLL_SECONDS."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.enabled = False
        self.totals = Counts()

    def start(self) -> None:
        with self.lock:
            self.enabled = True
            self.stopping.clear()
            if self.thread is None or not self.thread.is_alive():  # also: forked after a start
                self.thread = threading.Thread(target=self.loop, name="backchannel-logout", daemon=True)
                self.thread.start()

    def kick(self) -> None:
        if not self.enabled:
            return
        if self.thread is None or not self.thread.is_alive():
            self.start()
        self.wake.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the thread to finish its current attempt and exit; True if it did within `timeout`."""
        with self.lock:
            self.enabled = False
            self.stopping.set()
            self.wake.set()
            thread = self.thread
        if thread is None:
            return True
        thread.join(lease_seconds() if timeout is None else timeout)
        return not thread.is_alive()

    def loop(self) -> None:
        """Until stop(): purge now and then, and deliver whenever something is due (or a kick came)."""
        purged = 0.0
        while not self.stopping.is_set():
            self.wake.clear()
            pause = POLL_SECONDS
            try:
                close_old_connections()
                if time.monotonic() - purged >= PURGE_SECONDS:
                    purge()
                    housekeeping.tidy()
                    purged = time.monotonic()
                if anything_due():
                    self.totals.add(run(stopping=self.stopping))
            except Exception as exc:  # noqa: BLE001 - the database may be away; the rows wait in it
                log.warning("backchannel logout: delivery pass failed", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
                pause = 5 * POLL_SECONDS
            self.wake.wait(pause)
        connection.close()


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
