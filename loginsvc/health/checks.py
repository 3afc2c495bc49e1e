"""Dependency checks behind /readyz: each one answers quickly or counts as down."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.core.signals import setting_changed
from django.db import connections
from django.dispatch import receiver
from django_redis import get_redis_connection

from loginsvc import conf


def database() -> None:
    """SELECT 1 on a connection kept by the check's own thread.

    That thread never sees Django's per-request connection housekeeping, so it does its own: a
    connection that errored or outlived CONN_MAX_AGE is dropped first, and one that fails now is
    closed, so the next probe reconnects (after a database restart, say) instead of failing for
    ever. Kept, not opened per probe: PostgreSQL forks a backend for every new connection.
    """
    connection = connections["default"]
    connection.close_if_unusable_or_obsolete()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        connection.close()
        raise


def redis() -> None:
    # The pool's socket timeouts (settings.CACHES) bound how long this can take.
    get_redis_connection("default").ping()


CHECKS = {"database": database, "redis": redis}

# One thread per check, so a hung dependency costs a probe at most the timeout, and the database
# check always runs on the same thread (its connection lives there). A check stuck for ever keeps
# its thread; later probes then time out too, which is the truth.
_threads = {name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"readyz-{name}") for name in CHECKS}


def draining() -> bool:
    """True once the gunicorn master got SIGTERM (deploy/gunicorn.conf.py creates the drain file): the
    node reports not-ready while it still serves, so the router stops sending before it shuts down."""
    path = os.environ.get("LOGINSVC_DRAIN_FILE")
    return bool(path) and os.path.exists(path)


Result = tuple[bool, dict[str, str]]


class Readiness:
    """At most one round of checks in flight per process, its result reused for
    READINESS_CACHE_SECONDS.

    Why: every /readyz used to queue its own checks. A flood of probes (anyone can send them)
    then queued without bound behind a slow dependency and made the router's own health checks
    time out. Now a caller within the cache time gets the last result; a caller while a round
    runs gets the last result too, or, when there is none yet, waits for that round; and a check
    whose thread is still busy (a hung dependency) is waited on again, never queued twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, Result] | None = None  # when it finished (monotonic), result
        self._round: threading.Event | None = None  # set when the round in flight finishes
        self._pending: dict[str, Future[None]] = {}
        self.rounds = 0  # rounds run by this process (tests count them)

    def result(self) -> Result:
        with self._lock:
            last, round_ = self._last, self._round
            if last is not None and time.monotonic() - last[0] < conf.get("READINESS_CACHE_SECONDS"):
                return last[1]
            if round_ is not None and last is not None:
                return last[1]  # a round is running: its predecessor's answer, without waiting
            leader = round_ is None
            if leader:
                round_ = self._round = threading.Event()
                self.rounds += 1
        if not leader:
            round_.wait(conf.get("READY_TIMEOUT_SECONDS") + 1.0)
            with self._lock:
                last = self._last
            return last[1] if last is not None else (False, {"readiness": "error: no result yet"})
        result: Result | None = None
        try:
            result = self._run()
            return result
        finally:
            with self._lock:
                if self._round is round_:  # not reset meanwhile
                    self._round = None
                    if result is not None:
                        self._last = (time.monotonic(), result)
            round_.set()

    def _run(self) -> Result:
        """Every check in parallel on its own thread; a check still running from an earlier round is
        waited on again instead of being queued behind itself."""
        timeout = conf.get("READY_TIMEOUT_SECONDS")
        futures = {}
        for name, check in CHECKS.items():
            future = self._pending.get(name)
            if future is None or future.done():
                future = self._pending[name] = _threads[name].submit(check)
            futures[name] = future
        deadline = time.monotonic() + timeout
        results: dict[str, str] = {}
        for name, future in futures.items():
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
                results[name] = "ok"
            except FutureTimeout:
                results[name] = f"error: no answer within {timeout}s"
            except Exception as exc:  # noqa: BLE001 - any failure of a dependency means "not ready"
                results[name] = f"error: {type(exc).__name__}"
        return all(value == "ok" for value in results.values()), results

    def reset(self) -> None:
        """Forget the last result and any busy check (settings changed: they were about other servers)."""
        with self._lock:
            self._last, self._round = None, None
            self._pending.clear()


READINESS = Readiness()


def run_all() -> Result:
    """Whether all checks pass and a short, secret-free result for each (cached, one round at a time)."""
    if draining():
        return False, {"shutdown": "draining: the node is stopping"}
    return READINESS.result()


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: object) -> None:
    if setting in {"CACHES", "DATABASES", "LOGINSVC"}:
        READINESS.reset()


def close_connections() -> None:
    """Close the database connection the check thread keeps (for tests that drop the database)."""
    _threads["database"].submit(connections.close_all).result(timeout=5)
