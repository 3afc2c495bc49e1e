"""Buffered access log on stdout: one line per request with the cluster and node that served it, written off the loop;
requests refused before they became one (a bad or oversized head) get a line of their own, rate-limited."""
from __future__ import annotations

import queue
import sys
import threading
import time
from typing import BinaryIO, Final

from canary.dataplane.pin import BUCKETS

MAX_PENDING: Final = 64      # batches waiting for the writer (about 16,000 lines); past that, lines are dropped
REFUSALS_PER_SECOND: Final = 20   # lines for refused requests per second; the rest are counted, then summed up


class AccessLog:
    """A line is one string format on the request path; lines are joined into batches (by the sweeper every
    0.1 s, or when the buffer fills) and a writer thread writes them, so a slow stdout reader (a full pipe, a
    busy log collector) never stalls the event loop. If the writer falls MAX_PENDING batches behind, newer
    batches are dropped and counted (`dropped`, canary_access_log_dropped_lines_total) rather than held.

    A request refused while its head is read never becomes an exchange; refused() logs it with its status, a
    fixed reason word and the client address, and nothing of the request itself (a request line can carry
    secrets and control characters). A flood of them (a scanner, an attack) would drown the log, so at most
    REFUSALS_PER_SECOND are written per second; the others are counted (`not_logged`,
    canary_access_log_refusals_not_logged_total) and one line at the end of the second says how many."""

    __slots__ = ("out", "buf", "ts", "_ts_sec", "limit", "pending", "dropped", "_writer", "refusals", "unlogged",
                 "not_logged")

    def __init__(self, out: BinaryIO | None = None, limit: int = 256) -> None:
        self.out = out or sys.stdout.buffer
        self.buf: list[str] = []
        self.limit = limit
        self._ts_sec = 0
        self.ts = ""
        self.dropped = 0
        self.refusals = 0        # refused requests logged in this second
        self.unlogged = 0        # refused requests over the cap in this second
        self.not_logged = 0      # refused requests over the cap, ever
        self.pending: queue.Queue[bytes | None] = queue.Queue(MAX_PENDING)
        self._writer: threading.Thread | None = None
        self.tick(time.time())

    def tick(self, wall: float) -> None:
        """The clock (the sweeper's, every 0.1 s): a new second also ends the refused requests' window."""
        sec = int(wall)
        if sec != self._ts_sec:
            self._end_window()
            self._ts_sec = sec
            self.ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))

    def _end_window(self) -> None:
        if self.unlogged:
            self.buf.append(f"{self.ts} refused requests: {self.unlogged} more not logged\n")
            self.unlogged = 0
        self.refusals = 0

    def refused(self, status: int, reason: str, peer: bytes) -> None:
        """A request refused before it became an exchange: `reason` is a fixed word, `peer` the address."""
        if self.refusals >= REFUSALS_PER_SECOND:
            self.unlogged += 1
            self.not_logged += 1
            return
        self.refusals += 1
        self.buf.append(f'{self.ts} {peer.decode("ascii", "replace")} "-" {status} 0 - - attempts=0 bucket=- '
                        f"refused:{reason}\n")
        if len(self.buf) >= self.limit:
            self.flush()

    def log(self, peer: bytes, method: bytes, url: bytes, status: int, resp_bytes: int, elapsed: float, where: str,
            attempts: int, bucket: int, outcome: str) -> None:
        """One answered request: `where` the node's label (or "-"), `elapsed` seconds since its head; a tester's
        request (testers.py) says `bucket=tester`."""
        # the path only, as Django's log: a query string can carry tokens or personal data (?email=..., ?code=...)
        path = url.split(b"?", 1)[0]
        self.buf.append(
            f'{self.ts} {peer.decode()} "{method.decode()} {path.decode("latin-1")[:512]}" '
            f"{status} {resp_bytes} {elapsed * 1000:.2f}ms {where} attempts={attempts} "
            f"bucket={bucket if bucket < BUCKETS else 'tester'} {outcome}\n")
        if len(self.buf) >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Hand what is buffered to the writer thread (started on first use)."""
        if not self.buf:
            return
        lines = len(self.buf)
        data = "".join(self.buf).encode("utf-8", "replace")
        self.buf.clear()
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, name="access-log", daemon=True)
            self._writer.start()
        try:
            self.pending.put_nowait(data)
        except queue.Full:
            self.dropped += lines

    def close(self, timeout: float = 5.0) -> None:
        """Flush, then wait (bounded) until the writer has written everything handed to it."""
        self._end_window()
        self.flush()
        writer = self._writer
        if writer is not None:
            self._writer = None
            try:
                self.pending.put(None, timeout=timeout)
            except queue.Full:
                return
            writer.join(timeout)

    def _write(self) -> None:
        while True:
            data = self.pending.get()
            if data is None:
                return
            try:
                self.out.write(data)
                self.out.flush()
            except (OSError, ValueError):
                pass
