"""Prometheus metrics of a node; works in one process and across gunicorn workers (multiprocess mode)."""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_LATENCY = Histogram(
    "loginsvc_request_duration_seconds",
    "Time from request in to response out, by view and status.",
    ["view", "method", "status"],
    buckets=BUCKETS,
)
LOGINS = Counter("loginsvc_logins_total", "Login attempts by outcome.", ["outcome", "channel"])
LOCKOUTS = Counter("loginsvc_lockouts_total", "Locks set by the brute-force protection.", ["scope"])
PASSKEY_COUNTER_REGRESSIONS = Counter(
    "loginsvc_passkey_counter_regressions_total",
    "Passkey sign-ins refused because the authenticator's sign counter went back (a copied key).",
    ["channel"],  # labelled like LOGINS (and so created lazily, which multiprocess mode needs)
)
MAIL = Counter(
    "loginsvc_mail_total",
    "Attempts at the mail outbox's messages: delivered, retried (SMTP away or busy), failed (given up), "
    "skipped (meant for an account the address does not have).",
    ["result"],
)
SESSION_FAST_PATH = Counter(
    "loginsvc_session_fast_path_total",
    "GET /api/session requests the fast path answered (result=served) or handed to Django, and why.",
    ["result"],
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class BuildInfo(Collector):
    """loginsvc_build_info{cluster,node,release} 1: which build each node runs, e.g. during a rolling
    release. Computed at scrape time from the settings, so it needs no multiprocess bookkeeping."""

    def collect(self):  # noqa: ANN201 - prometheus_client's collector protocol
        from loginsvc import conf
        family = GaugeMetricFamily("loginsvc_build_info", "The node's cluster, name and release tag.",
                                   labels=["cluster", "node", "release"])
        family.add_metric([conf.get("CLUSTER"), conf.get("NODE"), conf.get("RELEASE")], 1)
        yield family


def render() -> bytes:
    """The text exposition: all workers' values in multiprocess mode, this process's otherwise."""
    # A rare event's counter is exported at 0 from the first scrape: an alert on increase() needs a
    # sample from before the first event. Made here, in a worker, where multiprocess files can live.
    PASSKEY_COUNTER_REGRESSIONS.labels("api")
    MAIL.labels("failed")
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
        registry.register(BuildInfo())
        return generate_latest(registry)
    registry.register(BuildInfo())
    return generate_latest() + generate_latest(registry)
