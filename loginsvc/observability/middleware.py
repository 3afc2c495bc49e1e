"""Outermost middleware: request id, X-Served-By, latency histogram and one access-log line per request.

The helpers (request_id_for, RequestObserver) are shared with the node's fast paths (loginsvc/fast_path.py),
so every path tags, measures and logs a request the same way.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Callable

from django.http import HttpRequest, HttpResponse

from loginsvc import conf
from loginsvc.health.middleware import ROUTES as HEALTH_ROUTES
from loginsvc.observability.logs import request_id
from loginsvc.observability.metrics import REQUEST_LATENCY

access_log = logging.getLogger("loginsvc.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
# Paths answered by HealthMiddleware before URL resolution, named like views: "/readyz" -> "readyz".
_UNROUTED = {path: path.strip("/") for path in HEALTH_ROUTES}
_PROBES = frozenset({"healthz", "readyz"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_id_for(incoming: str) -> str:
    """The client's X-Request-ID if well formed (it cannot inject anything), else a fresh one."""
    return incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def method_label(method: str | None) -> str:
    """The method as a metric label: a fixed set, so clients cannot create label values."""
    return method if method in _METHODS else "OTHER"


class RequestObserver:
    """What every answered request gets: X-Served-By, the latency histogram, an access-log line."""

    def __init__(self) -> None:
        self.served_by = f"{conf.get('CLUSTER')}/{conf.get('NODE')}"
        self.release = conf.get("RELEASE")
        self.access_log = conf.get("ACCESS_LOG")

    def headers(self, rid: str) -> tuple[tuple[str, str], ...]:
        """The headers every response gets, last; the one place to add another (both paths use it).

        X-Release shows which build answered, so a rolling release can be watched from outside."""
        return (("X-Served-By", self.served_by), ("X-Release", self.release), ("X-Request-ID", rid))

    def observe(self, view: str, method: str, path: str, status: int, elapsed: float) -> None:
        """Record one answered request; call with the request id of the request in context."""
        REQUEST_LATENCY.labels(view, method, str(status)).observe(elapsed)
        # Probes arrive several times a second from every router; log them only when they fail.
        if self.access_log and not (view in _PROBES and status == 200):
            # The path without its query string: a query may carry tokens.
            access_log.info(
                "%s %s %s", method, path[:200], status,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 2), "view": view},
            )


class RequestContextMiddleware:
    """Tags every response with who served it and measures it; placed first so it sees every response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.observer = RequestObserver()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = request_id_for(request.META.get("HTTP_X_REQUEST_ID", ""))
        token = request_id.set(rid)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            elapsed = time.perf_counter() - started
            for name, value in self.observer.headers(rid):
                response[name] = value
            match = request.resolver_match
            view = match.url_name if match and match.url_name else _UNROUTED.get(request.path_info, "unmatched")
            self.observer.observe(view, method_label(request.method), request.path_info,
                                  response.status_code, elapsed)
            return response
        finally:
            request_id.reset(token)
