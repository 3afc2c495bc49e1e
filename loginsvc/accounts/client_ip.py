"""The client's address: X-Forwarded-* are believed only from a trusted proxy, for its hop count.

Anything that can reach a node's port could otherwise write X-Forwarded-For (rotate it for
unlimited guesses, or name a victim's address to lock it out) and X-Forwarded-Proto (claim
https). So the peer itself (REMOTE_ADDR) must be in LOGINSVC_TRUSTED_PROXIES first; from anyone
else the forwarded headers are deleted before any other code sees them (ForwardedHeadersMiddleware,
first in MIDDLEWARE, and the fast paths through strip_untrusted_forwarding: loginsvc/fast_path.py).
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Callable

from django.http import HttpRequest, HttpResponse

from loginsvc import conf
from sharedlib.networks import canonical_address, forwarded_client

# Headers only a proxy may set (as WSGI keys). Django reads X-Forwarded-Proto through
# SECURE_PROXY_SSL_HEADER; Host and Port matter if USE_X_FORWARDED_HOST/PORT are ever turned on.
FORWARDED_KEYS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                  "HTTP_X_FORWARDED_PORT", "HTTP_FORWARDED")


def peer_is_trusted(meta: MutableMapping[str, Any]) -> bool:
    """Whether the connecting peer is one of our proxies (memoised per address: one dict lookup)."""
    return meta.get("REMOTE_ADDR", "") in conf.get("TRUSTED_PROXIES")


def strip_untrusted_forwarding(meta: MutableMapping[str, Any]) -> None:
    """Delete the forwarded headers from a request environ unless its peer is a trusted proxy."""
    if any(key in meta for key in FORWARDED_KEYS) and not peer_is_trusted(meta):
        for key in FORWARDED_KEYS:
            meta.pop(key, None)


def client_ip(request: HttpRequest, trusted_hops: int | None = None) -> str:
    """REMOTE_ADDR, or, from a trusted proxy, the address `trusted_hops` entries from the right of
    X-Forwarded-For.

    With N trusted proxies in front of us, the last N-1 entries were appended by proxies we
    trust and the one before them by the first of them: that one is the client as far as it
    can be known. Entries further left are whatever the client wrote and are never used
    (Envoy's xff_num_trusted_hops; the left-most entry is client-controlled). With fewer
    entries than trusted hops, the request skipped an outer proxy, and the left-most entry is
    the one a trusted proxy wrote about its peer. The peer check is repeated here (besides the
    middleware) so that no caller can count a forged address.
    """
    hops = conf.get("TRUSTED_PROXY_HOPS") if trusted_hops is None else trusted_hops
    remote = canonical_address(request.META.get("REMOTE_ADDR", "")) or "0.0.0.0"
    if hops <= 0 or not peer_is_trusted(request.META):
        return remote
    return forwarded_client(remote, request.META.get("HTTP_X_FORWARDED_FOR", ""), hops)


class ForwardedHeadersMiddleware:
    """First in the chain: a peer outside LOGINSVC_TRUSTED_PROXIES loses its X-Forwarded-* headers,
    so it can claim neither another address nor https (SECURE_PROXY_SSL_HEADER)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        strip_untrusted_forwarding(request.META)
        return self.get_response(request)
