"""Dependency checks behind /readyz: each one answers quickly or counts as down."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.db import connections
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


def run_all() -> tuple[bool, dict[str, str]]:
    """Run every check in parallel; returns whether all passed and a short, secret-free result for each."""
    if draining():
        return False, {"shutdown": "draining: the node is stopping"}
    timeout = conf.get("READY_TIMEOUT_SECONDS")
    futures = {name: _threads[name].submit(check) for name, check in CHECKS.items()}
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


def close_connections() -> None:
    """Close the database connection the check thread keeps (for tests that drop the database)."""
    _threads["database"].submit(connections.close_all).result(timeout=5)
