"""Front-door guards: which peers may forward client addresses, connections per client, paths kept from nodes."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_to_bytes

from loginsvc.networks import AddressRanges

from .config import proxy_networks
from .local_reply import local_response

if TYPE_CHECKING:
    from .exchange import Exchange

# Answered by the router itself on the front port, never forwarded: a flood of /readyz from clients would queue on
# every node's health executor, the router's own health checks would time out, and healthy nodes would be ejected.
ROUTER_PATHS: Final = frozenset((b"/healthz", b"/readyz", b"/metrics"))
# First byte after the leading '/' of any target that can normalize to one of ROUTER_PATHS: anything else
# (/, /api/..., /login/) skips the normalization, so ordinary requests pay one slice and one set lookup.
ROUTER_FIRST: Final = frozenset(bytes([c]) for c in b"/%.hrmHRM\\")


def answer_router_path(ex: "Exchange", path: bytes) -> None:
    """/healthz: the router is alive; /readyz: it has a usable cluster; /metrics lives on the admin port."""
    ctx = ex.ctx
    ctx.counters.router_path_answers += 1
    if path == b"/healthz":
        ex.fail_local(200, "router_path", b"ok\n")
    elif path == b"/readyz":
        ready = not ctx.routing.panic
        ex.fail_local(200 if ready else 503, "router_path", b"ready\n" if ready else b"no usable cluster\n")
    else:
        ex.fail_local(404, "router_path")


def router_path(url: bytes) -> bytes | None:
    """The health or metrics path a node could route `url` to (else None).

    Broader than what Django resolves (it matches PATH_INFO exactly, after gunicorn's single percent-decode):
    repeated or trailing slashes, leading dot segments, a query, path parameters, any case and repeated
    percent-encoding all count, so no spelling of these paths reaches a node whatever framework it runs."""
    if url[1:2] not in ROUTER_FIRST:   # callers on the hot path test this themselves first
        return None
    path = url
    for _ in range(4):                    # %2572 -> %72 -> r: decode until stable (bounded)
        path = path.replace(b"\\", b"/").split(b"?", 1)[0].split(b"#", 1)[0].split(b";", 1)[0]
        decoded = unquote_to_bytes(path)
        if decoded == path:
            break
        path = decoded
    segments: list[bytes] = []
    for seg in path.split(b"/"):
        if seg == b"..":
            if segments:
                segments.pop()
        elif seg and seg != b".":
            segments.append(seg)
    norm = b"/" + b"/".join(segments).lower()
    return norm if norm in ROUTER_PATHS else None


class ProxyTrust(AddressRanges):
    """`trusted_proxies`: the same memoised ranges as the login service's (loginsvc/networks.py), asked once
    per connection (connection_made). A Unix socket or an unparsable peer is never trusted."""

    def __init__(self, cidrs: list[str]) -> None:
        super().__init__(proxy_networks(cidrs))

    def trusted(self, peer: str) -> bool:
        return peer in self


_REFUSED: Final = local_response(429, True, body=b"429 Too Many Requests: too many connections from this address\n")


class ClientConnections:
    """Concurrent connections per client address (`limits.max_connections_per_client`, 0 = no cap).

    Connections from a trusted proxy are not capped: one proxy address carries many clients (cap those at
    the proxy). Everyone else gets a 429 and a close beyond the cap, counted in `refused`."""

    __slots__ = ("cap", "open", "refused")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: dict[bytes, int] = {}
        self.refused = 0

    def admit(self, peer: bytes, transport: Any) -> bool:
        """Count a new connection, or answer 429 on it and close it (nothing it sends is read)."""
        n = self.open.get(peer, 0)
        if n >= self.cap:
            self.refused += 1
            transport.write(_REFUSED)
            transport.close()
            return False
        self.open[peer] = n + 1
        return True

    def release(self, peer: bytes) -> None:
        n = self.open.get(peer, 0) - 1
        if n > 0:
            self.open[peer] = n
        else:
            self.open.pop(peer, None)
