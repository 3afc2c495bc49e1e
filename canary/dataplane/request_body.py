"""The client's request body inside an Exchange: streamed to the node, or (small bodies) read whole first."""
from __future__ import annotations

import time
from abc import abstractmethod
from typing import TYPE_CHECKING, Final

from canary.dataplane.bad_request import BadRequest
from canary.dataplane.chunk_framing import ChunkFraming

if TYPE_CHECKING:
    from canary.dataplane.downstream_io import DownstreamIO
    from canary.dataplane.request_context import RequestContext
    from canary.dataplane.upstream_pool import UpstreamConn

_now: Final = time.monotonic


class RequestBody:
    """The body half of Exchange (its base class): the body's state and how it moves; Exchange does the rest."""

    __slots__ = ("ctx", "front", "up", "body", "pending", "body_size", "body_bytes", "body_done", "chunked",
                 "buffering", "awaiting_body", "body_end", "deadline", "expect", "http10", "resp_started", "done")
    ctx: "RequestContext"
    front: "DownstreamIO"
    up: "UpstreamConn | None"
    body: list[bytes] | None      # what is kept for a replay (None once past replay_max)
    pending: list[bytes]          # what waits for a node connection
    body_size: int
    body_bytes: int
    body_done: bool
    chunked: bool
    buffering: bool
    awaiting_body: bool
    body_end: float
    deadline: float
    expect: bool
    http10: bool
    resp_started: bool
    done: bool

    @abstractmethod
    def start(self, now: float = 0.0) -> None:
        """Admission (Exchange.start): called again once a buffered body is whole."""

    @abstractmethod
    def _arm(self, now: float = 0.0) -> None:
        """The node-answer timer (Exchange._arm): re-armed as body bytes reach the node."""

    def buffer_body(self) -> None:
        """Read this request's body whole before a node is chosen (set while its head is parsed)."""
        self.buffering = True
        self.awaiting_body = False

    def _await_body(self) -> None:
        """Slow-body defence (as Envoy's and nginx's request buffering): no node and no concurrency slot until
        the whole small body is here, within timeouts.body_read and never stalling longer than body_idle."""
        self.awaiting_body = True
        t = self.ctx.timeouts
        now = _now()
        self.body_end = now + t.body_read
        self.deadline = min(self.body_end, now + t.body_idle)
        if self.expect and not self.http10 and not self.body_bytes:
            self.expect = False              # the router takes the body itself, so it says continue
            self.front.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _body_buffered(self) -> None:
        self.buffering = False
        if self.awaiting_body:
            self.awaiting_body = False
            self.start()

    # -- client body -------------------------------------------------------------------------------------------
    def client_body(self, data: bytes) -> None:
        n = len(data)
        self.body_bytes += n
        if self.body_bytes > self.ctx.limits.max_body_bytes:
            raise BadRequest(413, "body too large")
        if self.chunked:
            data = b"%x\r\n" % n + data + b"\r\n"
        if self.body is not None:
            self.body_size += len(data)
            if self.body_size > self.ctx.replay_max:
                self.body = None
            else:
                self.body.append(data)
        up = self.up
        if up is not None:
            up.transport.write(data)
            if not self.resp_started:
                self._arm()
        elif not self.done:
            self.pending.append(data)
            if self.buffering:
                if self.body_bytes > self.ctx.limits.buffer_body_bytes:
                    self._body_buffered()    # a chunked body past the buffer size: stream the rest
                elif self.awaiting_body:
                    self.deadline = min(self.body_end, _now() + self.ctx.timeouts.body_idle)

    def client_body_done(self) -> None:
        self.body_done = True
        if self.up is not None and not self.resp_started:
            self._arm()
        if self.chunked:
            self.chunked = False
            self.client_body_raw(b"0\r\n\r\n")
            return                   # started by chunked_read() once the read that ended it is counted
        if self.buffering and not self.done:
            self._body_buffered()

    def chunked_read(self, framing: ChunkFraming, fed: int, lines: int, counted: bool) -> bool:
        """After each read that carried this chunked body (DownstreamConn.data_received): count its framing
        (canary/dataplane/chunk_framing.py). False: its extensions are over the cap, and it must be refused. A buffered
        body that ended in this read is started only now, so a refused one never reaches a node."""
        if not framing.read(fed, self.body_bytes, lines, counted):
            return False
        self.start_if_ended()
        return True

    def start_if_ended(self) -> None:
        """A buffered chunked body that has ended goes to the node: after its read was counted, or when the
        same read went on to another request or a refused head (uncounted, chunk_framing.py)."""
        if self.body_done and self.buffering and not self.done:
            self._body_buffered()

    def client_body_raw(self, data: bytes) -> None:
        if self.body is not None:
            self.body.append(data)
        if self.up is not None:
            self.up.transport.write(data)
        elif not self.done:
            self.pending.append(data)
