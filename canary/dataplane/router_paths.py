"""The paths the router answers itself on the front port (health, readiness, metrics), in every spelling a node would route."""
from __future__ import annotations

from typing import Final
from urllib.parse import unquote_to_bytes

# Answered by the router itself on the front port, never forwarded: a flood of /readyz from clients would queue on
# every node's health executor, the router's own health checks would time out, and healthy nodes would be ejected.
ROUTER_PATHS: Final = frozenset((b"/healthz", b"/readyz", b"/metrics"))
# First byte after the leading '/' of any target that can normalize to one of ROUTER_PATHS: anything else
# (/, /api/..., /login/) skips the normalization, so ordinary requests pay one slice and one set lookup.
ROUTER_FIRST: Final = frozenset(bytes([c]) for c in b"/%.hrmHRM\\_")
TESTER_PATH: Final = b"/_canary/tester/"    # a tester link (testers.py), in this one spelling


def router_path(url: bytes) -> bytes | None:
    """The health or metrics path a node could route `url` to (else None).

    Broader than what Django resolves (it matches PATH_INFO exactly, after gunicorn's single percent-decode):
    repeated or trailing slashes, leading dot segments, a query, path parameters, any case and repeated
    percent-encoding all count, so no spelling of these paths reaches a node whatever framework it runs."""
    if url[1:2] not in ROUTER_FIRST:   # callers on the hot path test this themselves first
        return None
    if url.startswith(TESTER_PATH):
        return url.split(b"?", 1)[0]
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
