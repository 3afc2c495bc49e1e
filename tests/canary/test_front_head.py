"""The request head the router forwards: llhttp's syntax checks, then the router's own name and whole-head checks."""
from __future__ import annotations

import time

import pytest

from canary.dataplane.bad_request import BadRequest
from canary.dataplane.downstream import DownstreamConn


# Each of these would let a client smuggle a header or a request past a lenient parser (RFC 9112 §5, §5.2).
BAD_HEADER_LINES = {
    "NUL in a value": b"X: a\x00b",
    "control character in a value": b"X: a\x01b",
    "DEL in a value": b"X: a\x7fb",
    "bare CR in a value": b"X: a\rEvil: 1",
    "bare LF ending a line": b"X: a\nEvil: 1",
    "obs-fold continuation": b"X: a\r\n  folded",
    "space in a name": b"X Y: a",
    "space before the colon": b"Transfer-Encoding : chunked",
    "NUL in a name": b"X\x00Y: a",
    "empty name": b": a",
}


@pytest.mark.parametrize("line", BAD_HEADER_LINES.values(), ids=BAD_HEADER_LINES.keys())
def test_bad_header_syntax_gets_400_and_nothing_reaches_the_node(make_front, line):
    """Through the router's own parser: if an httptools upgrade or a parser setting relaxed one, this fails."""
    front, client_side, node_side = make_front()
    front.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n")
    assert client_side.written and client_side.written[0].startswith(b"HTTP/1.1 400 ")
    assert client_side.closed
    assert node_side.written == []


@pytest.mark.parametrize("value", [b"a\rEvil: 1", b"a\nEvil: 1", b"a\r\nEvil: 1", b"a\x00b"],
                         ids=["bare CR", "bare LF", "CRLF", "NUL"])
def test_the_whole_head_check_refuses_a_value_llhttp_let_through(make_front, value):
    """Defence in depth behind llhttp: a line built from a value holding CR, LF or NUL (as a lenient parser
    would pass it) makes the head a 400 instead of a second header or request; a clean line passes."""
    from canary.dataplane.request_head import forwarded_head
    front, client_side, node_side = make_front()
    front.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    ex = front.answering
    assert ex is not None
    assert forwarded_head(front, ex, [b"X: a\r\n"], 0).endswith(b"\r\nX: a\r\n\r\n")
    with pytest.raises(BadRequest) as e:
        forwarded_head(front, ex, [b"X: " + value + b"\r\n"], 0)
    assert e.value.status == 400


def test_clean_head_is_forwarded_exactly(make_front):
    """Every line the router rebuilds (Cookie without the pin, trusted X-Forwarded-*, Host, Content-Length)
    passes the whole-head check, and headers named in Connection are dropped (RFC 9110 §7.6.1)."""
    front, client_side, node_side = make_front("--trusted-hops", "1")
    pin = front.ctx.pin.make_value(1234, int(time.time()))
    front.data_received(
        b"POST /api/login HTTP/1.1\r\nHost: login.example.test\r\nAccept: */*\r\nConnection: keep-alive, X-Drop\r\n"
        b"X-Drop: hop\r\nCookie: a=1; canary_pin=" + pin + b"; b=2\r\nX-Forwarded-For: 203.0.113.9\r\n"
        b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: mail.example.test\r\nContent-Length: 5\r\n\r\nhello")
    assert node_side.written[0] == (
        b"POST /api/login HTTP/1.1\r\nAccept: */*\r\nCookie: a=1; b=2\r\n"
        b"X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Host: mail.example.test\r\nHost: login.example.test\r\nContent-Length: 5\r\n\r\n"
        b"hello")                                                   # a small body: read whole, one write with its head
    assert node_side.written[1:] == []
    assert client_side.written == [] and not client_side.closed
    assert front.answering is not None and front.answering.bucket == 1234       # the valid pin was used, not re-issued


def feed_head(conn: DownstreamConn, headers: list[tuple[bytes, bytes]]) -> None:
    """The request line through llhttp, then the header callbacks directly, as if llhttp had let them through."""
    conn.parser.feed_data(b"GET /api/session HTTP/1.1\r\n")
    for name, value in headers:
        conn.on_header(name, value)
    conn.on_headers_complete()


@pytest.mark.parametrize("name,value", [
    (b"X-Note", b"a\r\nEvil: 1"),               # a whole injected header line
    (b"X-Note", b"a\nEvil: 1"),                 # bare LF
    (b"X-Note", b"a\rb"),                       # bare CR
    (b"X-Note", b"a\x00b"),                     # NUL
    (b"Host", b"a\r\n\r\nGET /smuggled HTTP/1.1"),   # a value the router re-emits itself (Host, X-Forwarded-Host)
    (b"Cookie", b"a=1\r\nEvil: 1"),             # the Cookie header is rebuilt without the pin
    (b"Transfer-Encoding ", b"chunked"),        # not a token: must not pass as an ordinary header
    (b"Content-Length\t", b"5"),
    (b"X:Y", b"a"),
])
def test_router_checks_refuse_injection_even_past_the_parser(make_front, name, value):
    front, _, node_side = make_front()
    with pytest.raises(BadRequest) as caught:
        feed_head(front, [(b"Host", b"a")] * (name != b"Host") + [(name, value)])
    assert caught.value.status == 400
    assert node_side.written == []                 # nothing reached the node


def test_the_names_that_skip_the_checks_would_pass_them():
    """Request headers found in request_head._PLAIN skip the name regex and the hop-by-hop lookup: each must be a valid
    token and none hop-by-hop, or the shortcut would forward what the checks refuse."""
    from canary.dataplane.request_head import _NOT_TOKEN, _PLAIN, _REQ_HOP
    assert _PLAIN and all(_NOT_TOKEN(n) is None for n in _PLAIN)
    assert not {n.lower() for n in _PLAIN} & _REQ_HOP


def test_the_hop_by_hop_spellings_looked_up_are_the_checked_names():
    """request_head._HOP_SPELLED maps usual spellings of hop-by-hop headers to their lower-case names, skipping the
    name regex and lower(): each key must be a valid token, its value its lower() and in _REQ_HOP, or a name
    would be handled as another header than the one it is."""
    from canary.dataplane.request_head import _HOP_SPELLED, _NOT_TOKEN, _REQ_HOP
    assert _HOP_SPELLED and all(_NOT_TOKEN(n) is None for n in _HOP_SPELLED)
    assert all(lname == name.lower() and lname in _REQ_HOP for name, lname in _HOP_SPELLED.items())
