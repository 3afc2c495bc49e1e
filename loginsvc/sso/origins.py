"""Origins of the registered products, for the pages' Content-Security-Policy form-action.

Browsers apply form-action to every redirect that follows a form submission: the login POST
continues to /oidc/authorize/ and from there to the product's redirect URI, the consent POST and
the logout confirmation likewise. Without the products' origins in form-action, the browser stops
at the login page (tests/stack/test_sso_browser.py caught this). The registered products are the
only origins added: a product registered with sync_products is trusted as much as one in
LOGINSVC_PRODUCT_ORIGINS. Read from the database at most every CACHE_SECONDS per process.
"""
from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

CACHE_SECONDS = 10.0

_lock = threading.Lock()
_cached: tuple[float, tuple[str, ...]] = (0.0, ())


def _origin(uri: str) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def registered_origins() -> tuple[str, ...]:
    """Origins of every registered redirect and post-logout URI, sorted (a stable policy string)."""
    global _cached
    loaded, origins = _cached
    if time.monotonic() - loaded < CACHE_SECONDS:
        return origins
    with _lock:
        from django.db import DatabaseError
        from oauth2_provider.models import Application

        found: set[str] = set()
        try:
            rows = list(Application.objects.values_list("redirect_uris", "post_logout_redirect_uris"))
        except DatabaseError:  # the database is down: a page still renders, with the origins known last
            return origins
        for redirect_uris, post_logout in rows:
            for uri in f"{redirect_uris} {post_logout}".split():
                origin = _origin(uri)
                if origin:
                    found.add(origin)
        _cached = (time.monotonic(), tuple(sorted(found)))
        return _cached[1]


def forget() -> None:
    """Drop the cache (tests; sync_products in its own process does not need it)."""
    global _cached
    _cached = (0.0, ())
