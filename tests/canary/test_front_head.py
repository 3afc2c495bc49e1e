"""The request head the router forwards: llhttp's strict syntax checks, then the router's own whole-head check."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator

import httptools
import pytest

from canary.cli import build_parser, config_from_args
from canary.exchange import BadRequest
from canary.proxy import FrontConn
from canary.server import App
from canary.upstream_pool import Pool, UpstreamConn


class Transport:
    """Records what is written; the router's protocols need nothing else of a transport here."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, key: str) -> Any:
        return ("127.0.0.1", 40000) if key == "peername" else None

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


@pytest.fixture
def front(tmp_path) -> Iterator[tuple[FrontConn, Transport]]:
    """A FrontConn of a real App whose one pooled node connection writes into a Transport."""
    args = build_parser().parse_args(["serve", "--cluster", "blue=127.0.0.1:9", "--cluster", "green=127.0.0.1:9",
                                      "--no-access-log", "--state", str(tmp_path / "state.json")])
    app = App(config_from_args(args), "t" * 32, "p" * 32)
    loop = asyncio.new_event_loop()
    app.loop = loop
    node_side = Transport()
    for node in app.nodes:
        node.pool = Pool(node, loop, 1.0)
        conn = UpstreamConn(node.pool)
        conn.connection_made(node_side)
        node.pool.release(conn, 0.0)
    app.routing.refresh(time.monotonic())
    conn = FrontConn(app)
    conn.connection_made(Transport())
    yield conn, node_side
    loop.close()


# Each of these would let a client smuggle a header or a request past a lenient parser.
LLHTTP_REJECTS = {
    "NUL in a value": b"X: a\x00b",
    "control character in a value": b"X: a\x01b",
    "DEL in a value": b"X: a\x7fb",
    "bare CR in a value": b"X: a\rEvil: 1",
    "bare LF ending a line": b"X: a\nEvil: 1",
    "obs-fold continuation": b"X: a\r\n  folded",
    "space in a name": b"X Y: a",
    "space before the colon": b"X : a",
    "NUL in a name": b"X\x00Y: a",
    "empty name": b": a",
}


@pytest.mark.parametrize("line", LLHTTP_REJECTS.values(), ids=LLHTTP_REJECTS.keys())
def test_llhttp_strict_mode_rejects_bad_header_syntax(line):
    """The router relies on these (RFC 9112 §5, §5.2): if an httptools upgrade relaxed one, this fails."""
    parser = httptools.HttpRequestParser(object())
    with pytest.raises(httptools.HttpParserError):
        parser.feed_data(b"GET / HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n")


def feed_head(conn: FrontConn, headers: list[tuple[bytes, bytes]]) -> None:
    """The request line through llhttp, then the header callbacks directly, as if llhttp had let them through."""
    conn.parser.feed_data(b"GET /api/session HTTP/1.1\r\n")
    for name, value in headers:
        conn.on_header(name, value)
    conn.on_headers_complete()


def test_clean_head_is_forwarded_line_by_line(front):
    conn, node_side = front
    feed_head(conn, [(b"Host", b"login.example.test"), (b"Accept", b"*/*"), (b"Connection", b"keep-alive, X-Drop"),
                     (b"X-Drop", b"hop"), (b"Cookie", b"a=1; b=2")])
    head = node_side.written[-1]
    assert head.startswith(b"GET /api/session HTTP/1.1\r\nAccept: */*\r\n")
    assert b"Host: login.example.test\r\n" in head and b"Cookie: a=1; b=2\r\n" in head
    assert b"X-Drop" not in head and b"keep-alive" not in head    # named in Connection: hop-by-hop
    assert head.endswith(b"\r\n\r\n") and head.count(b"\r\n") == len(head.split(b"\r\n")) - 1


@pytest.mark.parametrize("name,value", [
    (b"X-Note", b"a\r\nEvil: 1"),               # a whole injected header line
    (b"X-Note", b"a\nEvil: 1"),                 # bare LF
    (b"X-Note", b"a\rb"),                       # bare CR
    (b"X-Note", b"a\x00b"),                     # NUL
    (b"Host", b"a\r\n\r\nGET /smuggled HTTP/1.1"),   # a value the router re-emits itself (Host, X-Forwarded-Host)
    (b"Cookie", b"a=1\r\nEvil: 1"),             # the Cookie header is rebuilt without the pin
])
def test_whole_head_check_refuses_injected_lines_even_past_the_parser(front, name, value):
    conn, node_side = front
    with pytest.raises(BadRequest) as caught:
        feed_head(conn, [(b"Host", b"a")] * (name != b"Host") + [(name, value)])
    assert caught.value.status == 400
    assert node_side.written == []                 # nothing reached the node
