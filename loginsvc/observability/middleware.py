"""Outermost middleware: request id, X-Served-By, latency histogram and one access-log line per request."""
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


class RequestContextMiddleware:
    """Tags every response with who served it and measures it; placed first so it sees every response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.served_by = f"{conf.get('CLUSTER')}/{conf.get('NODE')}"
        self.access_log = conf.get("ACCESS_LOG")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        rid = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            elapsed = time.perf_counter() - started
            response["X-Served-By"] = self.served_by
            response["X-Request-ID"] = rid
            match = request.resolver_match
            view = match.url_name if match and match.url_name else _UNROUTED.get(request.path_info, "unmatched")
            method = request.method if request.method in _METHODS else "OTHER"
            REQUEST_LATENCY.labels(view, method, str(response.status_code)).observe(elapsed)
            # Probes arrive several times a second from every router; log them only when they fail.
            if self.access_log and not (view in _PROBES and response.status_code == 200):
                # The path without its query string: a query may carry tokens.
                access_log.info(
                    "%s %s %s", method, request.path_info[:200], response.status_code,
                    extra={"status": response.status_code, "duration_ms": round(elapsed * 1000, 2), "view": view},
                )
            return response
        finally:
            request_id.reset(token)
