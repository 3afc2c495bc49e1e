"""Where a `next` parameter may send the browser: this service, or a registered product origin."""
from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

from loginsvc import conf

MAX_NEXT_LENGTH = 2048


def _has_unsafe_characters(value: str) -> bool:
    # Browsers strip tabs/newlines and treat backslashes as slashes: `/\evil` becomes `//evil`.
    return "\\" in value or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value)


def safe_next(value: str | None, request: HttpRequest) -> str | None:
    """`value` if it is safe to redirect to after login or logout, else None."""
    if not value or len(value) > MAX_NEXT_LENGTH or _has_unsafe_characters(value):
        return None
    origins = conf.get("PRODUCT_ORIGINS")
    if value.startswith("/") and not value.startswith("//"):
        local_ok = url_has_allowed_host_and_scheme(
            value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
        return value if local_ok else None
    try:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.username or parts.password:
            return None
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:  # unclosed IPv6 bracket, host invalid under NFKC, bad port
        return None
    if f"{parts.scheme}://{parts.netloc.lower()}" not in origins:
        return None
    hosts = {urlsplit(origin).netloc for origin in origins}
    return value if url_has_allowed_host_and_scheme(value, allowed_hosts=hosts) else None
