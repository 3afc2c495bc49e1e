"""Prometheus metrics of a node; works in one process and across gunicorn workers (multiprocess mode)."""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_LATENCY = Histogram(
    "loginsvc_request_duration_seconds",
    "Time from request in to response out, by view and status.",
    ["view", "method", "status"],
    buckets=BUCKETS,
)
LOGINS = Counter("loginsvc_logins_total", "Login attempts by outcome.", ["outcome", "channel"])
LOCKOUTS = Counter("loginsvc_lockouts_total", "Locks set by the brute-force protection.", ["scope"])
CONTENT_TYPE = CONTENT_TYPE_LATEST


def render() -> bytes:
    """The text exposition: all workers' values in multiprocess mode, this process's otherwise."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
