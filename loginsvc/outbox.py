"""Transactional outboxes: what a change must send is written with it, and delivered afterwards by any process.

Why an outbox and a lease, not sending from the request: the request must not wait on a peer (a
product or an SMTP server that is down would block or fail it), and nothing may be lost when the
peer is down or a node dies. So the change writes its rows in its own transaction, and this module
delivers them afterwards, for each kind of row (sso/backchannel.py's logouts, mail/delivery.py's
messages) with the same machinery:

- claiming: a process takes one due row with a conditional UPDATE (due, unclaimed or lease
  expired); the database decides who won on SQLite and PostgreSQL alike, so two processes never
  deliver the same row at once, and a process that dies mid-delivery only delays that row by the
  lease;
- delivery: the outbox's `deliver` makes one attempt; a transient failure is retried with
  exponential back-off and jitter, up to the outbox's maximum apart, until its give-up time after
  the row was written; then (or at once, for a failure the peer calls permanent) the outbox's
  `give_up` decides what remains of the row;
- after a transient failure, further rows of the same group (a product; the one SMTP server) wait
  for the next pass, so a peer that is down costs one timeout per pass, not one per row;
- each gunicorn worker runs one daemon thread per outbox (start() at worker init, stop() at worker
  exit) that kick() wakes right after a change commits and that also looks for due rows every
  `poll_seconds` (a second for logouts, 5 s for mail), so retries happen while any node runs. Elsewhere (manage.py, pytest) kick() does nothing:
  the outbox's command or deliver_due() deliver synchronously.

A row's model has these fields: created, attempts, next_attempt, claimed_until, delivered, last_error.
"""
from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import close_old_connections, connection
from django.db.models import Model, Q
from django.utils import timezone

BASE_BACKOFF_SECONDS = 1.0            # first retry after about a second, then 2, 4, 8 ... up to the maximum
POLL_SECONDS = 1.0                    # how often a worker thread looks for due rows without a kick
PURGE_SECONDS = 60.0                  # how often it runs the outbox's tidy()
BATCH = 100                           # due rows read per query


class Result(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"                   # transient: try again after the back-off; the row's group waits
    FAILED = "failed"                 # permanent: the peer refused it for good; give up now


@dataclass(frozen=True)
class Attempted:
    """What one attempt came to: the result, the error (short, never a secret) and fields to log."""

    result: Result
    error: str = ""
    log_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outbox:
    """One kind of row and how to deliver it."""

    name: str                                         # in log lines and the worker thread's name
    model: type[Model]
    deliver: Callable[[Any, datetime], Attempted]     # one attempt at a claimed row
    give_up: Callable[[Any, datetime, str], None]     # the row past its time, or refused for good
    give_up_seconds: Callable[[], float]
    max_backoff_seconds: Callable[[], float]
    attempt_seconds: Callable[[], float]              # the longest one attempt can take
    log: logging.Logger
    log_fields: Callable[[Any], dict[str, Any]]
    group: str | None = None                          # the field whose rows wait after a failure (None: all)
    select_related: tuple[str, ...] = ()
    tidy: Callable[[], None] = lambda: None            # now and then, from the worker thread
    poll_seconds: float = POLL_SECONDS                 # how often the thread looks for due rows unkicked


def backoff(box: Outbox, attempts: int, rand: float | None = None) -> float:
    """Seconds until the next attempt after `attempts` failed ones: doubling, capped, jittered
    down by up to 20 % so that the rows of one outage do not all come back at the same instant."""
    delay = min(float(box.max_backoff_seconds()), BASE_BACKOFF_SECONDS * 2 ** max(0, attempts - 1))
    return delay * (0.8 + 0.2 * (random.random() if rand is None else rand))


def lease_seconds(box: Outbox) -> float:
    """How long a claim lasts: longer than one attempt can take."""
    return float(box.attempt_seconds()) + 5


def _due(now: datetime) -> Q:
    return Q(delivered__isnull=True, next_attempt__lte=now) & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))


def claim(box: Outbox, pk: int, now: datetime) -> datetime | None:
    """Take row `pk` if it is still due and nobody holds it: the lease's end, or None if another won.

    One conditional UPDATE in autocommit: on SQLite writers are serialised, on PostgreSQL the
    second UPDATE re-checks the WHERE on the row the first one committed, so exactly one wins.
    next_attempt moves to the lease's end too, so the cheap due query skips rows being delivered."""
    until = now + timedelta(seconds=lease_seconds(box))
    won = box.model._default_manager.filter(_due(now), pk=pk).update(claimed_until=until, next_attempt=until)
    return until if won else None


@dataclass
class Counts:
    """What one pass did (the commands' --json output)."""

    delivered: int = 0
    retried: int = 0
    dropped: int = 0    # given up: too old, or refused for good
    deferred: int = 0   # not attempted this pass: an earlier row of its group just failed

    def add(self, other: "Counts") -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def attempt(box: Outbox, pk: int, now: datetime | None = None) -> str | None:
    """Claim row `pk` and try it once: "delivered", "retried", "dropped", or None if not ours to try."""
    given, now = now is not None, now or timezone.now()
    lease = claim(box, pk, now)
    if lease is None:
        return None
    rows = box.model._default_manager
    row = rows.select_related(*box.select_related).get(pk=pk)
    if now - row.created > timedelta(seconds=box.give_up_seconds()):
        box.give_up(row, now, row.last_error)
        return "dropped"
    row.attempts += 1
    tried = box.deliver(row, now)
    fields = {**box.log_fields(row), **tried.log_fields}
    if tried.result is Result.DELIVERED:
        rows.filter(pk=pk).update(delivered=now if given else timezone.now(), attempts=row.attempts,
                                  claimed_until=None, last_error="")
        box.log.info(f"{box.name}: delivered", extra=fields)
        return "delivered"
    if tried.result is Result.FAILED:
        rows.filter(pk=pk).update(attempts=row.attempts, claimed_until=None, last_error=tried.error[:255])
        row.last_error = tried.error[:255]
        box.give_up(row, now, tried.error)
        return "dropped"
    wait = backoff(box, row.attempts)
    kept = rows.filter(pk=pk, claimed_until=lease).update(
        attempts=row.attempts, claimed_until=None, last_error=tried.error[:255],
        next_attempt=now + timedelta(seconds=wait))
    box.log.info(f"{box.name}: failed, will retry", extra={
        **fields, "error": tried.error, "retry_in_seconds": round(wait, 1), "lease_kept": bool(kept)})
    return "retried"


def run(box: Outbox, now: datetime | None = None, stopping: threading.Event | None = None) -> Counts:
    """One pass over every row due now, oldest id first. After a transient failure, further rows of
    its group wait for the next pass. `stopping` ends the pass between two rows (a worker that exits
    leaves the rest to the next process)."""
    counts, failed, last = Counts(), set(), 0
    rows = box.model._default_manager
    group = box.group or "pk"
    while stopping is None or not stopping.is_set():
        due = list(rows.filter(_due(now or timezone.now()), pk__gt=last)
                   .order_by("pk").values_list("pk", group)[:BATCH])
        for pk, key in due:
            last, key = pk, key if box.group else None
            if stopping is not None and stopping.is_set():
                break
            if key in failed:
                counts.deferred += 1
                continue
            outcome = attempt(box, pk, now)
            if outcome == "retried":
                failed.add(key)
            if outcome:
                setattr(counts, outcome, getattr(counts, outcome) + 1)
        if len(due) < BATCH:
            break
    return counts


def anything_due(box: Outbox, now: datetime | None = None) -> bool:
    """The loop's cheap question, answered from the (delivered, next_attempt) index."""
    return box.model._default_manager.filter(delivered__isnull=True, next_attempt__lte=now or timezone.now()).exists()


class Worker:
    """One daemon thread per process and outbox: woken by kick(), looking for due rows every poll_seconds."""

    def __init__(self, box: Outbox) -> None:
        self.box = box
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
                self.thread = threading.Thread(target=self.loop, name=self.box.name.replace(" ", "-"), daemon=True)
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
        thread.join(lease_seconds(self.box) if timeout is None else timeout)
        return not thread.is_alive()

    def loop(self) -> None:
        """Until stop(): deliver whenever something is due (or a kick came), and tidy every PURGE_SECONDS,
        the first time that long after the start: a worker that just started serves its first requests
        alone (a restarted node is judged by the router on them), and every node tidies anyway."""
        tidied = time.monotonic()
        while not self.stopping.is_set():
            self.wake.clear()
            pause = self.box.poll_seconds
            try:
                close_old_connections()
                if time.monotonic() - tidied >= PURGE_SECONDS:
                    self.box.tidy()
                    tidied = time.monotonic()
                if anything_due(self.box):
                    self.totals.add(run(self.box, stopping=self.stopping))
            except Exception as exc:  # noqa: BLE001 - the database may be away; the rows wait in it
                self.box.log.warning(f"{self.box.name}: delivery pass failed",
                                     extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
                pause = 5 * self.box.poll_seconds
            self.wake.wait(pause)
        connection.close()
