"""Keep-alive connection pool per node and the upstream protocol that parses node responses."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httptools

if TYPE_CHECKING:
    from .cluster import Node

# Response headers never relayed as such (RFC 9110 §7.6.1); framing is re-done by the router.
_RESP_DROP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding",
                        b"upgrade", b"trailer", b"content-length"))


class UpstreamConn(asyncio.Protocol):
    """One TCP connection to a node. Carries one exchange at a time; events are forwarded to it."""

    __slots__ = ("pool", "transport", "parser", "ex", "closed", "idle_since", "lines", "cl", "te", "has_sb",
                 "conn_tokens", "skip", "got_bytes", "reset_parser", "reused", "paused")

    def __init__(self, pool: "Pool") -> None:
        self.pool = pool
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: Any = None
        self.closed = False
        self.idle_since = 0.0
        self.lines: list[bytes] = []
        self.cl: bytes | None = None
        self.te = False
        self.has_sb = False
        self.conn_tokens: list[bytes] | None = None
        self.skip = False
        self.got_bytes = False
        self.reset_parser = False
        self.reused = False
        self.paused = False

    # -- asyncio -----------------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        ex = self.ex
        if ex is not None:
            self.ex = None
            if self.lines is not None and ex.resp_started and self.cl is None and not self.te \
                    and ex.resp_eof_body:
                ex.on_response_complete(self, False)   # close-delimited body ends at EOF
            else:
                ex.upstream_error(self, "reset")

    def data_received(self, data: bytes) -> None:
        if self.ex is None:
            self.close()   # bytes on an idle pooled connection (e.g. a 408 before close): never reuse it
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            ex = self.ex
            self.ex = None
            self.close()
            if ex is not None:
                ex.upstream_error(self, "protocol_error")
            return
        if self.reset_parser:
            self.reset_parser = False
            self.parser = httptools.HttpResponseParser(self)

    def pause_writing(self) -> None:
        ex = self.ex
        if ex is not None:
            ex.front.pause_reading_for_upstream()

    def resume_writing(self) -> None:
        ex = self.ex
        if ex is not None:
            ex.front.resume_reading_for_upstream()

    # -- use -----------------------------------------------------------------------------------------------
    def send(self, ex: Any, data: bytes) -> None:
        self.ex = ex
        self.got_bytes = False
        self.transport.write(data)

    def close(self) -> None:
        self.ex = None
        if not self.closed:
            self.closed = True
            self.transport.close()
        self.pool.discard(self)

    # -- httptools callbacks -------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.lines = []
        self.cl = None
        self.te = False
        self.has_sb = False
        self.conn_tokens = None

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname in _RESP_DROP:
            if lname == b"content-length":
                self.cl = value
            elif lname == b"transfer-encoding":
                self.te = True
            elif lname == b"connection":
                toks = [t.strip().lower() for t in value.split(b",")]
                self.conn_tokens = (self.conn_tokens or []) + toks
            return
        if lname == b"x-served-by":
            self.has_sb = True
        self.lines.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self.skip = True      # interim 1xx: not relayed (Expect is answered by the router itself)
            return
        ex = self.ex
        if ex is None:
            return
        if self.conn_tokens:
            drop = {t for t in self.conn_tokens if t not in (b"close", b"keep-alive")}
            if drop:
                self.lines = [ln for ln in self.lines if ln.split(b":", 1)[0].lower() not in drop]
        ex.on_response_head(self, status)
        if ex.head_only and self.ex is ex:
            # HEAD: no body follows whatever Content-Length says; httptools cannot be told, so finish here
            # and start a fresh parser for the next response on this connection.
            self.reset_parser = True
            self.ex = None
            ex.on_response_complete(self, self.parser.should_keep_alive())

    def on_body(self, data: bytes) -> None:
        ex = self.ex
        if ex is not None and not self.skip:
            ex.on_response_body(data)

    def on_message_complete(self) -> None:
        if self.skip:
            self.skip = False
            return
        ex = self.ex
        if ex is not None:
            self.ex = None
            ex.on_response_complete(self, self.parser.should_keep_alive())


class Pool:
    """Idle connections of one node, most recently used first (LIFO keeps few connections warm)."""

    __slots__ = ("node", "loop", "idle", "connect_timeout", "max_idle", "connects", "connect_errors")

    def __init__(self, node: "Node", loop: asyncio.AbstractEventLoop, connect_timeout: float,
                 max_idle: int = 256) -> None:
        self.node = node
        self.loop = loop
        self.idle: list[UpstreamConn] = []
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.connects = 0
        self.connect_errors = 0

    def get(self) -> UpstreamConn | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
        return None

    def release(self, conn: UpstreamConn, now: float) -> None:
        if conn.closed:
            return
        if len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = now
        self.idle.append(conn)

    def discard(self, conn: UpstreamConn) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def connect(self, ex: Any) -> None:
        self.loop.create_task(self._connect(ex))

    async def _connect(self, ex: Any) -> None:
        self.connects += 1
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: UpstreamConn(self), self.node.host, self.node.port),
                self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            self.connect_errors += 1
            ex.connect_failed(self.node, "connect_timeout" if isinstance(e, asyncio.TimeoutError)
                              else "connect_failure")
            return
        ex.attach(conn)

    def close_idle(self, older_than: float) -> None:
        """Close idle connections unused since `older_than` (nodes such as gunicorn close idle ones early)."""
        keep = []
        for conn in self.idle:
            if conn.idle_since < older_than:
                conn.closed = True
                conn.transport.close()
            else:
                keep.append(conn)
        self.idle = keep

    def close_all(self) -> None:
        for conn in self.idle:
            conn.closed = True
            conn.transport.close()
        self.idle = []
