"""Downstream (client) HTTP/1.1 connection: strict httptools parsing, smuggling defences, pipelining, header rewriting."""
from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import httptools

from canary.dataplane.bad_request import REASONS, BadRequest
from canary.dataplane.exchange import Exchange
from canary.dataplane.hop_by_hop import without_connection_options
from canary.dataplane.local_reply import local_response
from canary.dataplane.request_head import (RequestHead, add_forwarding, exchange_for_head, forwarded_head,
                                           head_and_trailer_bytes)

if TYPE_CHECKING:
    from canary.dataplane.request_context import RequestContext

_now: Final = time.monotonic


class DownstreamConn(RequestHead):
    """A client connection: strict parse, one exchange at a time (pipelined requests wait, reading paused)."""

    __slots__ = ("receiving", "answering", "queue", "deadline", "closing", "error_status", "error_reason",
                 "reading_paused", "eof", "at_start", "begins", "counted")

    def __init__(self, ctx: "RequestContext") -> None:
        super().__init__(ctx)
        self.receiving: Exchange | None = None   # exchange whose request (head, body) is being received
        self.answering: Exchange | None = None   # exchange being answered (pipelined ones wait in queue)
        self.queue: deque[Exchange] = deque()
        self.closing = False
        self.error_status = 0
        self.error_reason = ""
        self.reading_paused = False
        self.eof = False
        self.deadline = 0.0
        self.at_start = True     # the parser is between messages: the next byte starts a request head
        self.begins = 0          # messages begun (to know whether a chunk belongs to one head only)
        self.counted = False

    def connection_made(self, transport: Any) -> None:
        """Decide once per connection whether the peer may forward client addresses, and cap connections per
        client address (a trusted proxy carries many clients, so it is not capped)."""
        self.transport = transport
        ctx = self.ctx
        peer = transport.get_extra_info("peername")
        self.peer = peer[0].encode() if peer else b"unknown"
        trusted = peer is not None and ctx.proxy_trust.trusted(peer[0])
        self.hops = ctx.trusted_hops if trusted else 0
        if not trusted and ctx.client_conns.cap:
            if not ctx.client_conns.admit(self.peer, transport):
                self.closing = True     # refused with a 429 and closed
                if ctx.access_log is not None:
                    ctx.access_log.refused(429, "too_many_connections", self.peer)
                return
            self.counted = True
        self.deadline = _now() + ctx.timeouts.header_read
        ctx.downstreams.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.ctx.downstreams.discard(self)
        if self.counted:
            self.counted = False
            self.ctx.client_conns.release(self.peer)
        answering = self.answering
        if answering is not None and not answering.done:
            answering.abort()
        for ex in self.queue:
            ex.drop_unstarted()
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.error_status:
            return
        entry = 1 if self.at_start else 0 if self.in_head else -1
        begins = self.begins
        try:
            self.parser.feed_data(data)
        except BadRequest as e:
            self.refuse_parsed(e.status, e.reason)
            return
        except httptools.HttpParserUpgrade:
            self.refuse_parsed(501, REASONS[501])
            return
        except httptools.HttpParserError as parse_error:   # its own name: mypyc types a name once per function
            cause = parse_error.__context__
            if isinstance(cause, BadRequest):
                self.refuse_parsed(cause.status, cause.reason)
            else:
                self.refuse_parsed(400, "bad_head" if self.in_head or self.at_start else
                                   "bad_chunk" if self.chunked else "bad_body")
            return
        ex = self.chunked_body
        if ex is not None:
            # its framing, per read (chunk_framing.py); a read that also held another request is not counted
            if ex.body_done or ex.done:
                self.chunked_body = None
            counted = self.begins - begins == max(entry, 0)
            lines = head_and_trailer_bytes(self, ex.method)
            if not ex.done and not ex.chunked_read(self.framing, len(data), lines, counted):
                if self.receiving is None:
                    self.receiving = ex      # its body ended in this read: it is the request refused
                self.bad_request(400, "bad_chunk")
                return
        if self.in_head:
            # httptools buffers a header value (or URL) until it ends, so its size is checked here, per chunk:
            # count every chunk that holds nothing but this incomplete head (at most one read more is held)
            if self.begins - begins == entry:
                self.head_bytes += len(data)
                if self.head_bytes > self.max_head:
                    self.bad_request(431, REASONS[431])

    def eof_received(self) -> bool:
        """Client half-close: finish what was fully received, then close; a truncated request is dropped."""
        self.eof = True
        answering = self.answering
        if answering is None or answering.done or self.closing:
            return False
        receiving = self.receiving
        if receiving is not None:
            if receiving is answering and not answering.resp_started:
                answering.keep_alive = False
                answering.abort_upstream_for_bad_body(400, "truncated_body")
                return True
            return False
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        answering = self.answering
        if answering is not None and answering.up is not None:
            answering.up.pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        answering = self.answering
        if answering is not None and answering.up is not None:
            answering.up.resume()

    def pause_reading_for_upstream(self) -> None:
        self.paused_by_upstream_hint = True
        self._pause()

    def resume_reading_for_upstream(self) -> None:
        self.paused_by_upstream_hint = False
        if self.answering is self.receiving and not self.queue:
            self._resume()

    def _pause(self) -> None:
        if not self.reading_paused and not self.closing:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.reading_paused and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- httptools callbacks -----------------------------------------------------------------------------------
    def on_chunk_header(self) -> None:
        """A chunk line of a chunked body was parsed (only chunked bodies get this call)."""
        self.framing.chunk_line()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.hsize = 0
        self.content_length = None
        self.chunked = False
        self.host = None
        self.cookies = []
        self.forwarded_for = self.forwarded_proto = self.forwarded_host = None
        self.expect = False
        self.conn_tokens = None
        self.in_head = True
        self.at_start = False
        self.begins += 1
        self.head_bytes = 0
        if self.answering is None:
            self.deadline = _now() + self.ctx.timeouts.header_read

    def on_headers_complete(self) -> None:
        """The request head is complete: check it, build the exchange and the head the node gets, start it."""
        self.in_head = False
        ex, size = exchange_for_head(self)
        headers = self.headers
        if self.conn_tokens:
            headers = without_connection_options(headers, self.conn_tokens)
        self._route_by_pin(ex, headers)
        add_forwarding(self, headers)
        ex.head = forwarded_head(self, ex, headers, size)
        self.ctx.retry_budget.active += 1
        self.receiving = ex
        if self.answering is None:
            self.answering = ex
            self.deadline = 0.0
            ex.start(ex.t0)
        else:
            self.queue.append(ex)     # pipelined: started when the ones before it are answered
            self._pause()
        ctx = self.ctx
        if ctx.mirror.on:             # shadow traffic (mirror.py): the one test while nothing is mirrored
            self._shadow(ex, headers)

    def _shadow(self, ex: Exchange, headers: list[bytes]) -> None:
        """A safe request without a body is considered for a copy on the next loop turn, after its own dispatch
        (a copy is a head only: one with a body would leave the node waiting for bytes that never come)."""
        ctx = self.ctx
        mirror = ctx.mirror
        if ex.body_done and not ex.expect and mirror.eligible(ex.method, ex.url, self.cookies, headers):
            loop = ctx.loop
            assert loop is not None, "requests arrive once the process has started"
            loop.call_soon(mirror.copy, ex, ctx.retry_budget.active)

    def _route_by_pin(self, ex: Exchange, headers: list[bytes]) -> None:
        """The pin cookie: checked, kept from the node, issued when missing, invalid or due for renewal."""
        ctx = self.ctx
        bucket, stale = -1, False
        pin = ctx.pin
        for c in self.cookies:
            b, rest, old = pin.extract(c, ctx.wall_now)
            if b >= 0 and bucket < 0:
                bucket, stale = b, old
            if rest is not None:
                headers.append(b"Cookie: " + rest + b"\r\n")
        if bucket < 0 or stale:  # new browser, or a pin past half its life: same bucket, new date
            bucket, ex.cookie_line = pin.issue(ctx.wall_now, bucket)
        ex.bucket = bucket

    def on_body(self, data: bytes) -> None:
        receiving = self.receiving
        if receiving is not None:
            receiving.client_body(data)

    def on_message_complete(self) -> None:
        receiving = self.receiving
        if receiving is not None and not receiving.body_done:
            receiving.client_body_done()
        self.receiving = None
        self.at_start = True

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def exchange_done(self, now: float) -> None:
        ex = self.answering      # the one finishing: only the exchange being answered is ever started
        if self.closing or ex is None:
            return
        self.answering = None
        if not ex.keep_alive or (not ex.body_done and self.receiving is ex):
            self.close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            self.answering = nxt
            nxt.start()
            if self.receiving is nxt and not self.error_status and not nxt.done:
                self._resume()        # its body is still arriving: read it (reading was paused for the queue)
            return
        if self.error_status:
            self._reject(self.error_status, self.error_reason)   # every earlier response is out: now the 4xx
            return
        if self.eof:
            self.close()
            return
        self.deadline = now + self.ctx.timeouts.idle
        if self.reading_paused:      # paused for a pipelined request or a slow node: read again
            self._resume()

    def sweep(self, now: float) -> None:
        answering = self.answering
        if answering is not None:
            if not answering.done and answering.deadline <= now:
                answering.timeout()
        elif self.deadline and self.deadline <= now:
            self.close()

    def refuse_parsed(self, status: int, reason: str) -> None:
        """bad_request for what the parser refused; a chunked body that ended earlier in the same read is
        complete and goes to its node first (its read held another message: not counted)."""
        ex = self.chunked_body
        if ex is not None and ex.body_done:
            ex.start_if_ended()
        self.bad_request(status, reason)

    def bad_request(self, status: int, reason: str) -> None:
        """Answer 4xx and close; nothing after the offending bytes is parsed or forwarded. `reason`, a fixed
        word, is what the access log says (the exchange's outcome, or a line of its own: _reject)."""
        if self.closing:
            return
        self.ctx.counters.bad_requests += 1
        receiving = self.receiving
        if self.answering is not None and not self.answering.done:
            answering = self.answering
            if receiving is answering and not answering.resp_started:
                # the body of the in-flight request was bad: the node got a truncated body, drop it
                answering.keep_alive = False
                answering.abort_upstream_for_bad_body(status, reason)
                return
            # a later (pipelined) request is bad: answer in order, so stop reading, let the earlier
            # responses finish, then send the 4xx and close (exchange_done)
            if receiving is not None and receiving is not answering:
                self.queue.remove(receiving)                 # its body is incomplete: it is never forwarded
                receiving.drop_unstarted()
                self.receiving = None
            self.error_status = status
            self.error_reason = reason
            self._pause()
            return
        self._reject(status, reason)

    def _reject(self, status: int, reason: str) -> None:
        """A request refused before it became an exchange: its own access log line (rate-limited there)."""
        self.closing = True
        log = self.ctx.access_log
        if log is not None:
            log.refused(status, reason, self.peer)
        self.transport.write(local_response(status, True))
        self.transport.close()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        self.transport.abort()

