"""Buffered access log on stdout: one line per request with the cluster and node that served it."""
from __future__ import annotations

import sys
import time
from typing import Any, BinaryIO


class AccessLog:
    """Lines are joined and written in batches (by the sweeper or when the buffer fills) to keep the
    per-request cost to one string format."""

    __slots__ = ("out", "buf", "ts", "_ts_sec", "limit")

    def __init__(self, out: BinaryIO | None = None, limit: int = 256) -> None:
        self.out = out or sys.stdout.buffer
        self.buf: list[str] = []
        self.limit = limit
        self._ts_sec = 0
        self.ts = ""
        self.tick(time.time())

    def tick(self, wall: float) -> None:
        sec = int(wall)
        if sec != self._ts_sec:
            self._ts_sec = sec
            self.ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))

    def log(self, ex: Any, now: float) -> None:
        node = ex.node
        where = node.label if node is not None else "-"
        # the path only, as Django's log: a query string can carry tokens or personal data (?email=..., ?code=...)
        url = ex.url.split(b"?", 1)[0]
        self.buf.append(
            f'{self.ts} {ex.front.peer.decode()} "{ex.method.decode()} {url.decode("latin-1")[:512]}" '
            f"{ex.status} {ex.resp_bytes} {(now - ex.t0) * 1000:.2f}ms {where} attempts={ex.attempts} "
            f"bucket={ex.bucket} {ex.outcome}\n")
        if len(self.buf) >= self.limit:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            data = "".join(self.buf).encode("utf-8", "replace")
            self.buf.clear()
            try:
                self.out.write(data)
                self.out.flush()
            except (OSError, ValueError):
                pass
