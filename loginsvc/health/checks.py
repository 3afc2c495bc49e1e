"""Dependency checks behind /readyz: each one answers quickly or counts as down."""
from __future__ import annotations

from django.db import connections
from django_redis import get_redis_connection


def database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def redis() -> None:
    # The pool's socket timeouts (settings.CACHES) bound how long this can take.
    get_redis_connection("default").ping()


CHECKS = {"database": database, "redis": redis}


def run_all() -> tuple[bool, dict[str, str]]:
    """Run every check; returns whether all passed and a short, secret-free result for each."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure of a dependency means "not ready"
            results[name] = f"error: {type(exc).__name__}"
    return all(value == "ok" for value in results.values()), results
