"""Keep-alive connection pool per node and the upstream protocol that parses node responses."""
from __future__ import annotations

import asyncio
from typing import Any, Final

import httptools

from canary.dataplane.chunk_framing import ChunkFraming
from canary.dataplane.hop_by_hop import connection_options, spellings, without_connection_options

# Response headers never relayed as such (RFC 9110 §7.6.1); framing is re-done by the router.
_RESP_DROP: Final = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding",
                        b"upgrade", b"trailer", b"content-length"))


# Relayed as they are (none is in _RESP_DROP or X-Served-By, which a test checks): one set lookup each.
_RELAYED: Final = frozenset((b"Server", b"Date", b"Content-Type", b"Vary", b"X-Frame-Options", b"X-Content-Type-Options",
                      b"Referrer-Policy", b"Cross-Origin-Opener-Policy", b"Cache-Control", b"Expires",
                      b"Set-Cookie", b"Location", b"Content-Security-Policy", b"Strict-Transport-Security",
                      b"X-Request-ID", b"X-Release", b"ETag", b"Last-Modified", b"Content-Language", b"Pragma",
                      b"Content-Encoding", b"Link", b"Permissions-Policy", b"Access-Control-Allow-Origin"))

# The names of _RESP_DROP as nodes spell them: the lower-case name by one dict lookup, without lower-casing.
_DROP_SPELLED: Final = spellings(_RESP_DROP)


class Endpoint:
    """Where a pool connects: a node's address. Node (cluster.py) is one; the pool knows nothing else of it."""

    __slots__ = ("host", "port")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port


class BadResponse(Exception):
    """Raised in a response callback: stops llhttp; `kind` is the failure the exchange reports (a 502)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class UpstreamConn(asyncio.Protocol):
    """One TCP connection to a node. Carries one exchange at a time; events are forwarded to it.

    A response is never finished from inside a parser callback: the callbacks only record that the message
    is complete (`fin`), and data_received decides after feed_data() returns whether the connection can be
    pooled. Any byte after the end of the response (or after the head of a HEAD/204/304 response) means
    the node and the router disagree on framing, so the connection is closed instead of reused."""

    __slots__ = ("pool", "transport", "parser", "ex", "closed", "idle_since", "lines", "cl", "te", "has_sb",
                 "conn_tokens", "skip", "got_bytes", "reused", "paused", "fin", "keep", "extra", "nobody", "in_head",
                 "head_bytes", "rx_len", "max_head", "max_headers", "framing")

    def __init__(self, pool: "Pool") -> None:
        self.pool = pool
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: Any = None
        self.closed = False
        self.idle_since = 0.0
        self.lines: list[bytes] = []
        self.cl: bytes | None = None
        self.te: bytes | None = None   # the Transfer-Encoding value(s): only exactly "chunked" is relayed
        self.has_sb = False
        self.conn_tokens: list[bytes] | None = None
        self.in_head = False     # a response head is being parsed (its size is capped per received chunk)
        self.head_bytes = 0      # bytes of earlier chunks of an unfinished head
        self.rx_len = 0          # size of the chunk being parsed
        self.max_head = pool.max_head
        self.max_headers = pool.max_headers
        self.skip = False
        self.got_bytes = False
        self.reused = False
        self.paused = False      # reading paused for a slow client (back-pressure); resumed before pooling
        self.fin: Any = None     # exchange whose response is complete, decided after feed_data() returns
        self.keep = False
        self.extra = False       # bytes after the end of the response
        self.nobody = False      # HEAD/204/304: the message ended with its head
        self.framing: ChunkFraming | None = None   # a chunked response's framing, counted per read

    # -- asyncio -----------------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        ex = self.ex
        if ex is not None:
            self.ex = None
            if exc is None and ex.resp_started and self.cl is None and not self.te and ex.resp_eof_body:
                ex.on_response_complete(self, False)   # close-delimited body ends at a clean EOF
            else:
                ex.upstream_error(self, "reset")       # a reset mid-body is not a complete response

    def data_received(self, data: bytes) -> None:
        if self.ex is None:
            self.close()   # bytes on an idle pooled connection (e.g. a 408 before close): never reuse it
            return
        self.got_bytes = True
        self.rx_len = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._failed("upgrade")       # 101 or an Upgrade answer: the router does not tunnel
            return
        except httptools.HttpParserError as e:
            cause = e.__context__
            self._failed(cause.kind if isinstance(cause, BadResponse) else "protocol_error")
            return
        if self.in_head:
            # httptools buffers an unfinished head: count every chunk that leaves it unfinished (at most one
            # read more than the cap is ever held), so a node cannot grow the router's memory without end
            self.head_bytes += len(data)
            if self.head_bytes > self.max_head:
                self._failed("response_head_too_large")
                return
        framing = self.framing
        if framing is not None and not self._chunked_read(framing, data):
            return
        fin = self.fin
        if fin is not None:
            self._complete(fin)

    def _chunked_read(self, framing: ChunkFraming, data: bytes) -> bool:
        """Count a chunked response's framing after each read (chunk_framing.py); over the cap, the response is
        cut (relayed data stays relayed) and the node ejected. In the read that ended the head, the head is
        its bytes up to the empty line when the head began in that read and no 1xx answer came before it;
        otherwise that read is not counted. Trailer fields count as framing: the router drops them."""
        ex = self.fin if self.fin is not None else self.ex
        if self.fin is not None or ex is None:
            self.framing = None
        if ex is None:
            return True
        counted, lines = not self.extra, framing.lines
        if framing.data == 0 and lines == 0:        # the read that ended the head
            end = data.find(b"\r\n\r\n")
            counted = (counted and self.head_bytes == 0 and end > 0 and data.startswith(b"HTTP/")
                       and data[9:10] != b"1")
            lines = end + 4
        if framing.read(len(data), ex.resp_bytes, lines, counted):
            return True
        self._failed("chunk_extensions_too_large")
        return False

    def _failed(self, kind: str) -> None:
        fin, ex = self.fin, self.ex
        self.fin = None
        self.ex = None
        if fin is not None:
            self.extra = True
            self._complete(fin)           # the response was complete; garbage after it: close, do not reuse
            return
        self.close()
        if ex is not None:
            ex.upstream_error(self, kind)

    def _complete(self, ex: Any) -> None:
        self.fin = None
        reusable = self.keep and not self.extra and not self.closed
        if reusable and self.nobody:
            self.parser = httptools.HttpResponseParser(self)   # llhttp may still expect a body after HEAD
        self.nobody = False
        self.extra = False
        if reusable and self.paused:
            self.resume()
        ex.on_response_complete(self, reusable)

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

    def pause(self) -> None:
        if not self.paused and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def usable(self) -> bool:
        """Open and not closing: a reset marks the transport closing before connection_lost reaches us, and a
        write to it would raise."""
        return not self.closed and not self.transport.is_closing()

    def close(self) -> None:
        self.ex = None
        if not self.closed:
            self.closed = True
            self.transport.close()
        self.pool.discard(self)

    # -- httptools callbacks (record only; never finish an exchange from here) --------------------------------
    def on_message_begin(self) -> None:
        if self.fin is not None:
            self.extra = True     # a further message in the same buffer
            return
        self.lines = []
        self.cl = None
        self.te = None
        self.has_sb = False
        self.conn_tokens = None
        self.in_head = True
        self.head_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.fin is not None:
            return
        if name in _RELAYED:       # a usual header in its usual spelling: relayed without lower-casing
            self.lines.append(b"%s: %s\r\n" % (name, value))
            return
        lname = _DROP_SPELLED.get(name) or name.lower()
        if lname in _RESP_DROP:
            if lname == b"content-length":
                self.cl = value
            elif lname == b"transfer-encoding":
                self.te = value if self.te is None else self.te + b", " + value
            elif lname == b"connection":
                self.conn_tokens = connection_options(self.conn_tokens, value)
            return
        if lname == b"x-served-by":
            self.has_sb = True
        self.lines.append(b"%s: %s\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.fin is not None:
            return
        # exact size only when the head and the chunk that ended it could pass the cap (cheap on the hot path)
        if self.head_bytes + self.rx_len > self.max_head or len(self.lines) > self.max_headers:
            if len(self.lines) > self.max_headers or sum(map(len, self.lines)) > self.max_head:
                raise BadResponse("response_head_too_large")
        if self.te is not None:
            if self.te.strip().lower() != b"chunked":
                # gzip, "gzip, chunked", identity...: re-framing would drop the coding (or mis-frame the body)
                raise BadResponse("bad_transfer_coding")
            self.framing = ChunkFraming(16)    # a node's chunk size: up to 16 hex digits (64 bits)
        status = self.parser.get_status_code()
        if status < 200:
            self.skip = True      # interim 1xx: not relayed (Expect is answered by the router itself)
            return
        ex = self.ex
        if ex is None:
            return
        if self.conn_tokens:
            self.lines = without_connection_options(self.lines, self.conn_tokens)
        ex.on_response_head(self, status)
        if self.ex is ex and (ex.head_only or status in (204, 304)):
            # no body follows whatever Content-Length says; anything after this head is a framing error
            self.keep = self.parser.should_keep_alive()
            self.nobody = True
            self.fin = ex
            self.ex = None

    def on_chunk_header(self) -> None:
        framing = self.framing
        if framing is not None:
            framing.chunk_line()

    def on_body(self, data: bytes) -> None:
        if self.fin is not None:
            if data:
                self.extra = True   # a body after HEAD/204/304, or after the end of the response
            return
        ex = self.ex
        if ex is not None and not self.skip:
            ex.on_response_body(data)

    def on_message_complete(self) -> None:
        if self.skip:
            self.skip = False
            return
        if self.fin is not None:
            return            # the end of a no-body response, or of a further message (flagged at its begin)
        ex = self.ex
        if ex is not None:
            self.ex = None
            self.keep = self.parser.should_keep_alive()
            self.fin = ex


class Pool:
    """Idle connections of one node, most recently used first (LIFO keeps few connections warm)."""

    __slots__ = ("node", "loop", "idle", "connect_timeout", "max_idle", "connects", "connect_errors", "tasks",
                 "max_head", "max_headers")

    def __init__(self, node: Endpoint, loop: asyncio.AbstractEventLoop, connect_timeout: float,
                 max_idle: int = 256, max_head: int = 64 * 1024, max_headers: int = 100) -> None:
        self.node = node
        self.max_head = max_head          # limits.max_response_header_bytes
        self.max_headers = max_headers    # limits.max_response_headers
        self.loop = loop
        self.idle: list[UpstreamConn] = []
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.connects = 0
        self.connect_errors = 0
        self.tasks: set[asyncio.Task] = set()   # strong references: the loop keeps only weak ones

    def get(self) -> UpstreamConn | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():   # usable(), without the call
                conn.reused = True
                return conn
        return None

    def release(self, conn: UpstreamConn, now: float) -> None:
        if conn.closed:
            return
        if conn.paused:
            conn.resume()    # never pool a connection whose reading is paused: its next request would hang
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
        t = self.loop.create_task(self._connect(ex))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _connect(self, ex: Any) -> None:
        self.connects += 1
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: UpstreamConn(self), self.node.host, self.node.port),
                self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            reason = "connect_timeout" if isinstance(e, asyncio.TimeoutError) else "connect_failure"
        else:
            if conn.usable():
                ex.attach(conn)
                return
            # The node accepted, then reset the connection before this task resumed (a node killed right after
            # accept): connection_lost found no exchange to tell. Nothing was sent: a connect failure, retried so.
            reason = "connect_failure"
        self.connect_errors += 1
        ex.connect_failed(self.node, reason)

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
