"""Hop-by-hop headers (RFC 9110 §7.6.1), both ways: their usual spellings, and the options a Connection header names."""
from __future__ import annotations

from typing import Final

_NO_HEADER: Final = (b"close", b"keep-alive")    # Connection options that name no header


def spellings(names: frozenset[bytes]) -> dict[bytes, bytes]:
    """Each lower-case name and its Title-Case spelling (as clients and nodes send them) -> the lower-case name:
    the header callbacks find the usual spellings by one dict lookup, without lower()."""
    return {s: n for n in names for s in (n, n.title())}


def connection_options(tokens: list[bytes] | None, value: bytes) -> list[bytes]:
    """`tokens` and the lower-cased options of one more Connection header value."""
    return (tokens or []) + [t.strip().lower() for t in value.split(b",")]


def without_connection_options(lines: list[bytes], tokens: list[bytes]) -> list[bytes]:
    """Header lines named in Connection are hop-by-hop: never relayed (close and keep-alive name none)."""
    drop = {t for t in tokens if t not in _NO_HEADER}
    return [ln for ln in lines if ln.split(b":", 1)[0].lower() not in drop] if drop else lines
