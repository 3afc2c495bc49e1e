"""Answers probes and metrics scrapes before host checks, sessions and CSRF: cheap and always reachable."""
from __future__ import annotations

import hmac
import ipaddress
from typing import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from loginsvc import conf
from loginsvc.health import checks
from loginsvc.observability import metrics


def _is_direct_loopback(request: HttpRequest) -> bool:
    try:
        loopback = ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False
    # A request relayed by the router also comes from loopback, but carries X-Forwarded-* headers.
    return loopback and not any(key.startswith("HTTP_X_FORWARDED_") for key in request.META)


def _metrics_allowed(request: HttpRequest) -> bool:
    token = conf.get("METRICS_TOKEN")
    if token:
        given = request.META.get("HTTP_AUTHORIZATION", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    return _is_direct_loopback(request)


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "alive"})


def readyz(request: HttpRequest) -> HttpResponse:
    ready, results = checks.run_all()
    if ready:
        return JsonResponse({"status": "ready", "checks": results})
    failing = ", ".join(f"{name}: {value}" for name, value in results.items() if value != "ok")
    response = JsonResponse({"status": "unavailable", "reason": failing, "checks": results}, status=503)
    response["Retry-After"] = "1"
    return response


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _metrics_allowed(request):
        return JsonResponse({"error": "forbidden"}, status=403)
    return HttpResponse(metrics.render(), content_type=metrics.CONTENT_TYPE)


ROUTES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics_view,
}


class HealthMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = ROUTES.get(request.path_info)
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = JsonResponse({"error": "method not allowed"}, status=405)
            response["Allow"] = "GET, HEAD"
            return response
        return view(request)
