"""Dependency checks behind /readyz: each one answers quickly or counts as down."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.db import connections
from django_redis import get_redis_connection

from loginsvc import conf


def database() -> None:
    """Open a connection, run SELECT 1, close it.

    A fresh connection each time: this runs on a pool thread where Django's per-request
    connection housekeeping never happens, so a kept connection would stay broken after a
    database restart (and hold the test database open). It also proves that new connections
    can be made, which a kept one would not.
    """
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def redis() -> None:
    # The pool's socket timeouts (settings.CACHES) bound how long this can take.
    get_redis_connection("default").ping()


CHECKS = {"database": database, "redis": redis}


# Checks run on these threads so that a hung dependency costs the probe at most the timeout.
# A check stuck forever keeps its thread; later probes then time out too, which is the truth.
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


def run_all() -> tuple[bool, dict[str, str]]:
    """Run every check in parallel; returns whether all passed and a short, secret-free result for each."""
    timeout = conf.get("READY_TIMEOUT_SECONDS")
    futures = {name: _pool.submit(check) for name, check in CHECKS.items()}
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
