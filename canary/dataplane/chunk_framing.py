"""The bytes of a chunked body that are neither data nor bare framing (chunk extensions, padding, trailers), capped.

llhttp checks a chunk line's syntax and skips its extensions (`3;name=value`) without storing them, and httptools
passes no callback for them: nothing else counts those bytes, so without this a client (or a node) could send one
endless chunk line, or endless small ones, that no body or head limit ever sees. RFC 9112 §7.1.1 lets a recipient
limit extensions; Node.js caps them at 16 KiB since CVE-2024-22019. The router forwards none of them: it re-frames
every body it relays (canary/dataplane/request_body.py, canary/dataplane/exchange.py).

The parser reports events, not positions, so the count is taken per read, after the parser has consumed it: the
bytes of the read, minus the data and the head and trailer-field bytes in it, are framing; every chunk line parsed
earns back its bare size (its size digits and the two CRLFs of a chunk). What is left is extensions, leading zeros
and unfinished trailer lines, and past MAX_CHUNK_EXTENSIONS the message is refused. A read that also holds bytes of
another message (pipelining, a 1xx answer) cannot be split and is not counted: that leaves at most one read
(256 KiB, never stored) uncounted, and an endless stream is still cut at the next read.
"""
from __future__ import annotations

from typing import Final

MAX_CHUNK_EXTENSIONS: Final = 4096   # bytes of chunk extensions (and padding) a chunked message may carry
CHUNK_LINE_CRLFS: Final = 4          # the CRLF ending a chunk line and the one after its data


class ChunkFraming:
    """The framing count of one chunked message, from the read that ended its head to the one that ends it."""

    __slots__ = ("budget", "slack", "data", "lines")

    def __init__(self, size_digits: int, lines: int = 0) -> None:
        self.slack = size_digits + CHUNK_LINE_CRLFS   # a bare chunk line and CRLF: what each chunk earns back
        self.budget = MAX_CHUNK_EXTENSIONS
        self.data = 0          # data bytes of the message counted so far
        self.lines = lines     # head and trailer-field bytes counted so far (of the head: those of earlier reads)

    def chunk_line(self) -> None:
        """A chunk line was parsed (llhttp's on_chunk_header)."""
        self.budget += self.slack

    def read(self, fed: int, data: int, lines: int, counted: bool) -> bool:
        """A read of `fed` bytes was parsed; `data` and `lines` are the message's totals after it. False when the
        extensions are now over the cap. `counted=False`: the read held another message too, so it is not
        counted, but the totals move on."""
        if counted:
            self.budget -= fed - (data - self.data) - (lines - self.lines)
        self.data = data
        self.lines = lines
        if self.budget < 0:
            return False
        if self.budget > MAX_CHUNK_EXTENSIONS:   # what bare chunk lines earned is not carried to later reads
            self.budget = MAX_CHUNK_EXTENSIONS
        return True
