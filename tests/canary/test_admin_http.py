"""The admin port parses HTTP strictly (httptools, as the proxy port): bad or oversized requests get a clear 4xx."""
from __future__ import annotations

import json

import pytest

from tests.support import raw_exchange

from .conftest import TOKEN, toml_config


@pytest.fixture
def router(backends, router_factory):
    blue, green = backends("blue", 1), backends("green", 1)
    return router_factory(config=toml_config({"blue": blue, "green": green}))


def ask(port: int, data: bytes) -> tuple[int, bytes]:
    """(status, body) of the admin port's answer to raw bytes, sent whole and half-closed (one request each)."""
    head, _, body = raw_exchange(port, data, timeout=5, half_close=True).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def post(path: str, body: bytes, *headers: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer %s\r\n%s\r\n" % (
        path.encode(), TOKEN.encode(), b"".join(h + b"\r\n" for h in headers))) + body


def test_a_chunked_ramp_is_read_whole(router) -> None:
    body = json.dumps({"percent": 12}).encode()
    status, answer = ask(router.admin_port, post("/api/ramp", b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
                                                  b"Transfer-Encoding: chunked"))
    assert status == 200, answer
    assert router.status()["percent"] == 12


@pytest.mark.parametrize("request_bytes, status, says", [
    (b"GARBAGE\r\n\r\n", 400, b"bad request"),
    (b"GET /api/status HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     b"bad request"),
    (post("/api/ramp", b"", b"Content-Length: 70000"), 413, b"body too large"),
    (post("/api/ramp", b"fffff\r\n" + b"x" * 70000, b"Transfer-Encoding: chunked"), 413, b"body too large"),
    (b"GET /api/status HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 70000 + b"\r\n\r\n", 431, b"head too large"),
    (b"GET /api/status HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", 400,
     b"bad request"),
    (b"GET /api/status HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nshort", 400, b"bad request"),
], ids=["garbage", "length and chunked", "declared too large", "chunked too large", "head too large", "upgrade",
        "cut short"])
def test_bad_admin_requests_get_a_clear_4xx_and_the_port_stays_up(router, request_bytes, status, says) -> None:
    got, body = ask(router.admin_port, request_bytes)
    assert (got, says in body) == (status, True), body
    assert router.status()["clusters"]                 # still answering


def test_odd_credentials_and_methods_get_a_clear_4xx_never_a_500(router) -> None:
    """A cookie that is no session (a non-ASCII digit once reached int()), a bearer token that is not text, a
    POST to a static file or to the page (once taken for a sign-in): each a plain 401 or 405."""
    for request_bytes, status, says in [
        (b"GET /api/status HTTP/1.1\r\nHost: a\r\nCookie: canary_ops=\xb2.1.2.3\r\n\r\n", 401, b"bearer token"),
        (b"GET /api/status HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \xff\xfe\r\n\r\n", 401, b"bearer token"),
        (b"POST /static/dashboard.js HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\ntoken", 405, b"no such file"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 405, b"no such endpoint"),
    ]:
        got, body = ask(router.admin_port, request_bytes)
        assert (got, says in body) == (status, True), (request_bytes[:40], body)
