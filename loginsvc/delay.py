"""LOGINSVC_TEST_DELAY: a deliberately slow node, for load tests and canary-analysis tests only.

One environment for the whole stack (every node under supervisord inherits it), so the setting
names its targets: `LOGINSVC_TEST_DELAY=green-1=300` slows node green-1 by 300 ms,
`green=150` every node of cluster green; a node's own entry beats its cluster's (`green=150,green-1=0`).
settings.py refuses any of it in production.

The outermost WSGI wrapper (loginsvc/wsgi.py): every answer of the node waits, the fast paths'
too, except the probes and scrapes HealthMiddleware answers (/healthz, /readyz, /metrics), so a
slowed node stays healthy and routed, just slow. A node with no delay gets its application back
unchanged: no cost at all.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from loginsvc import conf

logger = logging.getLogger(__name__)


def seconds_for(delays: Iterable[tuple[str, int]], node: str, cluster: str) -> float:
    """The node's delay: its own entry, else its cluster's, else 0."""
    by_target = dict(delays)
    ms = by_target.get(node, by_target.get(cluster, 0))
    return ms / 1000


def _exempt_paths() -> frozenset[str]:
    from loginsvc.health.middleware import ROUTES  # needs the settings: imported when wrapping

    return frozenset(ROUTES)


class DelayedApp:
    """`inner`, each answer after a sleep of `seconds`, except for the paths in `exempt`."""

    def __init__(self, inner: WSGIApplication, seconds: float, exempt: frozenset[str]) -> None:
        self.inner, self.seconds, self.exempt = inner, seconds, exempt

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # PATH_INFO as HealthMiddleware sees it (request.path_info) for these ASCII paths.
        if environ.get("PATH_INFO", "") not in self.exempt:
            time.sleep(self.seconds)  # gunicorn's threads: one request waits, the others go on
        return self.inner(environ, start_response)


def wrap(inner: WSGIApplication) -> WSGIApplication:
    """loginsvc/wsgi.py's outermost layer: `inner` itself unless LOGINSVC_TEST_DELAY slows this node."""
    node, cluster = conf.get("NODE"), conf.get("CLUSTER")
    seconds = seconds_for(conf.get("TEST_DELAY"), node, cluster)
    if not seconds:
        return inner
    exempt = _exempt_paths()
    logger.warning("LOGINSVC_TEST_DELAY: node %s (cluster %s) delays every answer by %d ms, except %s "
                   "(a test-only setting)", node, cluster, round(seconds * 1000), ", ".join(sorted(exempt)))
    return DelayedApp(inner, seconds, exempt)
