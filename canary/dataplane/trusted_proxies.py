"""Which peers may forward client addresses (`trusted_proxies`): memoised address ranges asked once per connection."""
from __future__ import annotations

from canary.config.loading import proxy_networks
from sharedlib.networks import AddressRanges


class ProxyTrust(AddressRanges):
    """`trusted_proxies`: the same memoised ranges as the login service's (sharedlib/networks.py), asked once
    per connection (connection_made). A Unix socket or an unparsable peer is never trusted."""

    def __init__(self, cidrs: list[str]) -> None:
        super().__init__(proxy_networks(cidrs))

    def trusted(self, peer: str) -> bool:
        return peer in self
