"""Content-Security-Policy for our pages: scripts and fetches only from here, forms post only here or to products."""
from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Callable

from django.http import HttpRequest, HttpResponse

from loginsvc import conf

# Features add callables that name more origins a form's redirects may reach (single sign-on adds
# the registered products' origins: sso/origins.py). Called once per HTML response, so keep them cheap.
FORM_TARGET_SOURCES: list[Callable[[], Iterable[str]]] = []


@functools.lru_cache(maxsize=64)
def policy(targets: tuple[str, ...]) -> str:
    # The one script (passkeys) is a file of this origin; no inline script, no eval, nothing elsewhere.
    return ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; "
            f"form-action {' '.join(targets)}; frame-ancestors 'none'; base-uri 'none'")


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            # form-action also governs the redirects after a form POST (login → authorize → product).
            targets = {*conf.get("PRODUCT_ORIGINS")}
            for source in FORM_TARGET_SOURCES:
                targets.update(source())
            response.setdefault("Content-Security-Policy", policy(("'self'", *sorted(targets))))
        return response
