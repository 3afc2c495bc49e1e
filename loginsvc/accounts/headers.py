"""Content-Security-Policy for our pages: no scripts at all, forms post only here or to products."""
from __future__ import annotations

from typing import Callable

from django.http import HttpRequest, HttpResponse

from loginsvc import conf


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # form-action also governs the redirect after the login POST, so products are listed.
        targets = " ".join(("'self'", *conf.get("PRODUCT_ORIGINS")))
        self.policy = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
            f"form-action {targets}; frame-ancestors 'none'; base-uri 'none'"
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            response.setdefault("Content-Security-Policy", self.policy)
        return response
