"""The client's address, trusting X-Forwarded-For only for the configured number of proxy hops."""
from __future__ import annotations

import ipaddress

from django.http import HttpRequest

from loginsvc import conf


def _valid(candidate: str) -> str | None:
    """The canonical text of an address (IPv4-mapped IPv6 as plain IPv4, no zone), or None."""
    try:
        address = ipaddress.ip_address(candidate.strip().split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def client_ip(request: HttpRequest, trusted_hops: int | None = None) -> str:
    """REMOTE_ADDR, or the address `trusted_hops` entries from the right of X-Forwarded-For.

    With N trusted proxies in front of us, the last N-1 entries were appended by proxies we
    trust and the one before them by the first of them: that one is the client as far as it
    can be known. Entries further left are whatever the client wrote and are never used
    (Envoy's xff_num_trusted_hops; the left-most entry is client-controlled). With fewer
    entries than trusted hops, the request skipped an outer proxy, and the left-most entry is
    the one a trusted proxy wrote about its peer.
    """
    hops = conf.get("TRUSTED_PROXY_HOPS") if trusted_hops is None else trusted_hops
    remote = _valid(request.META.get("REMOTE_ADDR", "")) or "0.0.0.0"
    if hops <= 0:
        return remote
    forwarded = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if not forwarded:
        return remote
    chosen = forwarded[-hops] if len(forwarded) >= hops else forwarded[0]
    return _valid(chosen) or remote
