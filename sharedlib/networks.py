"""Address ranges parsed once from configuration, with a cheap, cached membership test per peer address."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MEMO_LIMIT = 4096


def _address(candidate: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address (IPv4-mapped IPv6 as plain IPv4, no zone), or None."""
    try:
        address = ipaddress.ip_address(candidate.strip().split("%", 1)[0])
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def canonical_address(candidate: str) -> str | None:
    """The canonical text of an address (IPv4-mapped IPv6 as plain IPv4, no zone), or None."""
    address = _address(candidate)
    return None if address is None else str(address)


def forwarded_client(remote: str, forwarded_for: str, hops: int) -> str:
    """The client behind `hops` trusted proxies: the X-Forwarded-For entry `hops` from the right (with
    fewer entries, the left-most: the one a trusted proxy wrote about its own peer), canonical; else
    `remote`. The caller has checked that the peer is a trusted proxy; entries further left are
    client-controlled and never used (Envoy's xff_num_trusted_hops)."""
    entries = [part for part in forwarded_for.split(",") if part.strip()]
    if hops <= 0 or not entries:
        return remote
    return canonical_address(entries[-hops] if len(entries) >= hops else entries[0]) or remote


class AddressRanges:
    """A fixed set of CIDR ranges. `address in ranges` is memoised per address text: the same few
    proxies connect over and over, so after the first request from each it is one dict lookup."""

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self.networks = tuple(networks)
        self._memo: dict[str, bool] = {}

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        known = self._memo.get(address)
        if known is not None:
            return known
        parsed = _address(address)
        found = parsed is not None and any(parsed in network for network in self.networks)
        if len(self._memo) >= _MEMO_LIMIT:  # peers are a handful of proxies; direct clients vary
            self._memo.clear()
        self._memo[address] = found
        return found

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AddressRanges) and other.networks == self.networks

    def __hash__(self) -> int:
        return hash(self.networks)

    def __str__(self) -> str:
        return ",".join(str(network) for network in self.networks) or "(none)"

    __repr__ = __str__


def parse_ranges(raw: str) -> AddressRanges:
    """Comma-separated CIDRs (`10.0.0.0/8,fd00::/8`; a bare address is one host); empty: none.

    A bad entry raises ValueError naming it, so the configuration error says which one."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an address range like 10.0.0.0/8 ({exc})") from None
    return AddressRanges(networks)
