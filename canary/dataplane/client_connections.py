"""Concurrent connections per client address, refused with a 429 beyond the cap."""
from __future__ import annotations

from typing import Any, Final

from canary.dataplane.local_reply import local_response

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
