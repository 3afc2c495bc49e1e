"""The head a node gets from a client's request head: what is refused, the forwarding headers, the body's framing.

Functions of the DownstreamConn whose head llhttp has just parsed (canary/proxy.py calls them in order from
on_headers_complete); they read what its header callbacks collected and raise BadRequest for what a node must
never see."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from .chunk_framing import ChunkFraming
from .exchange import Exchange
from .guard import ROUTER_FIRST, router_path
from .request_body import BadRequest

if TYPE_CHECKING:
    from .proxy import DownstreamConn

_now: Final = time.monotonic
IDEMPOTENT: Final = frozenset((b"GET", b"HEAD", b"OPTIONS"))
_CTL: Final = b"\r\n\x00"        # never in a forwarded value: a CR or LF could start a header or a request
# A request head's bytes beyond what its callbacks count (hsize): "METHOD" SP target SP "HTTP/1.1" CRLF, and the
# empty line; hsize counts the target and "name: value" CRLF per field (and per trailer field later).
HEAD_FRAMING: Final = 14


def head_and_trailer_bytes(conn: "DownstreamConn", method: bytes) -> int:
    """The bytes of the request head and of the trailer fields parsed so far (as sent with one space after each
    colon): what a read of a chunked body holds besides data and chunk framing."""
    return conn.hsize + len(method) + HEAD_FRAMING


def exchange_for_head(conn: "DownstreamConn") -> tuple[Exchange, int]:
    """Refuse what a node must never see (RFC 9112 §6.1, §3.2), then the exchange for this head, and the
    declared body size (-1: none, or chunked)."""
    parser = conn.parser
    method = parser.get_method()
    url = conn.url
    if conn.content_length is not None and conn.chunked:
        raise BadRequest(400, "both Content-Length and Transfer-Encoding")
    if not url.startswith(b"/") and not (method == b"OPTIONS" and url == b"*"):
        raise BadRequest(400, "only origin-form request targets are accepted")
    if method == b"CONNECT":
        raise BadRequest(405, "CONNECT not allowed")
    http10 = parser.get_http_version() == "1.0"
    if conn.host is None and not http10:
        raise BadRequest(400, "missing Host")
    if http10 and conn.chunked:
        raise BadRequest(400, "Transfer-Encoding in an HTTP/1.0 request")
    size = -1 if conn.content_length is None else int(conn.content_length)
    if size > conn.ctx.limits.max_body_bytes:
        raise BadRequest(413, "body too large")
    ex = Exchange(conn.ctx, conn)
    ex.t0 = _now()
    ex.method = method
    ex.url = url
    ex.http10 = http10
    ex.keep_alive = parser.should_keep_alive()
    ex.head_only = method == b"HEAD"
    ex.idempotent = method in IDEMPOTENT
    ex.expect = conn.expect
    ex.chunked = conn.chunked
    if url[1:2] in ROUTER_FIRST:   # /healthz, /readyz, /metrics in any spelling: answered by the router
        ex.local = router_path(url)
    return ex, size


def add_forwarding(conn: "DownstreamConn", headers: list[bytes]) -> None:
    """X-Forwarded-*: keep only the configured number of trusted hops from the right, and only from a peer
    in trusted_proxies (decided in connection_made); anyone else's forwarded headers are replaced."""
    hops = conn.hops
    if hops and conn.forwarded_for:
        kept = [p.strip() for p in conn.forwarded_for.split(b",")][-hops:]
        headers.append(b"X-Forwarded-For: " + b", ".join(kept) + b", " + conn.peer + b"\r\n")
    else:
        headers.append(b"X-Forwarded-For: " + conn.peer + b"\r\n")
    proto = conn.forwarded_proto if hops and conn.forwarded_proto else b"http"
    fhost = conn.forwarded_host if hops and conn.forwarded_host else conn.host
    headers.append(b"X-Forwarded-Proto: " + proto + b"\r\n")
    if fhost is not None:
        headers.append(b"X-Forwarded-Host: " + fhost + b"\r\n")
    if conn.host is not None:
        headers.append(b"Host: " + conn.host + b"\r\n")


def forwarded_head(conn: "DownstreamConn", ex: Exchange, headers: list[bytes], size: int) -> bytes:
    """The head for the node, with the body's framing; small (and chunked, up to the buffer size decoded)
    bodies are read whole first (request_body.py). Defence in depth behind llhttp: exactly one CRLF per line
    we built and no NUL, so no byte a client sent (URL, values, the Cookie rest, X-Forwarded-*, Host) can
    start a header or a request of its own."""
    if conn.chunked:
        if conn.chunked_body is not None:    # the one before ended in this very read: it goes now
            conn.chunked_body.start_if_ended()
        headers.append(b"Transfer-Encoding: chunked\r\n")
        ex.buffer_body()
        # its framing is counted after every read from now on (chunk_framing.py); a legal chunk size has at
        # most as many hex digits as the body cap, and earlier reads of this head were counted by data_received
        conn.framing = ChunkFraming(len(b"%x" % conn.ctx.limits.max_body_bytes), conn.head_bytes)
        conn.chunked_body = ex
    elif conn.content_length is not None:      # size = its value
        headers.append(b"Content-Length: " + conn.content_length + b"\r\n")
        ex.body_done = size == 0
        if 0 < size <= conn.ctx.limits.buffer_body_bytes:
            ex.buffer_body()
    else:
        ex.body_done = True       # no body: the usual GET pays nothing more
    head = ex.method + b" " + ex.url + b" HTTP/1.1\r\n" + b"".join(headers) + b"\r\n"
    # The head holds exactly one CR and one LF per line we built and no NUL of ours, so it is clean exactly
    # when deleting every CR, LF and NUL removes two bytes per line: one C scan instead of three.
    if len(head) - len(head.translate(None, _CTL)) != 2 * (len(headers) + 2):
        raise BadRequest(400, "bad header value")
    return head
