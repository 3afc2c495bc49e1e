"""Client-side abuse: huge unterminated headers, stalled bodies, pipelining with split or bad bodies, a queued
request that fails early, HTTP/1.0 and Expect, forwarding headers."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.support import read_all

from .conftest import FAST, toml_config


@pytest.fixture
def one_node(backends, router_factory):
    blue = backends("blue", 1)
    green = backends("green", 1)
    cfg = toml_config({"blue": blue, "green": green}, access_log=False, **FAST,
                      limits={"max_header_bytes": 4096, "queue_timeout": 5.0},
                      timeouts={"upstream": 1.5, "body_idle": 0.7, "header_read": 5.0},
                      cluster_limits={"blue": {"max_concurrent": 1, "max_queue": 4}})
    return router_factory(config=cfg), blue[0]


def test_unterminated_huge_header_rejected_while_streaming(one_node):
    r, _ = one_node
    s = socket.create_connection(("127.0.0.1", r.port), 5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ")
    sent = 0
    try:
        while sent < 8 * 1024 * 1024:                 # no CRLF: httptools keeps buffering the value
            s.sendall(b"a" * 65536)
            sent += 65536
    except OSError:
        pass                                          # the router answered and closed: good
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 431"), (sent, out[:80])
    assert sent < 4 * 1024 * 1024                     # cut early, not after the whole 8 MiB


def test_stalled_body_is_408_and_node_not_ejected(one_node):
    r, _ = one_node
    s = socket.create_connection(("127.0.0.1", r.port), 5)
    s.sendall(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
    t0 = time.monotonic()
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 408"), out[:80]
    assert 0.5 < time.monotonic() - t0 < 3
    st = r.status()
    assert [n["state"] for n in st["clusters"]["blue"]["nodes"]] == ["healthy"]
    # a slow but steady body (longer than timeouts.upstream in total) is fine
    s = socket.create_connection(("127.0.0.1", r.port), 5)
    s.sendall(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
    for b in b"hello":
        time.sleep(0.45)
        s.sendall(bytes([b]))
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 200") and b'"body_len": 5' in out, out[:200]
    assert r.get("/")[1]["x-served-by"] == "blue/blue-1"


def test_pipelined_request_with_split_body(one_node):
    r, _ = one_node
    s = socket.create_connection(("127.0.0.1", r.port), 5)
    s.sendall(b"GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n"
              b"POST /p2 HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
    time.sleep(0.5)                                   # the POST has started; the rest of its body comes now
    s.sendall(b"world" + b"GET /p3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    out = read_all(s)
    s.close()
    assert out.count(b"HTTP/1.1 200") == 3, out
    assert b'"body_len": 10' in out
    assert out.index(b'"/slow?ms=200"') < out.index(b'"/p2"') < out.index(b'"/p3"')


def test_bad_pipelined_request_answered_in_order(one_node):
    r, blue = one_node
    s = socket.create_connection(("127.0.0.1", r.port), 5)
    s.sendall(b"GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n"
              b"POST /never HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 200"), out[:100]
    assert b"HTTP/1.1 400" in out and out.index(b'"/slow?ms=300"') < out.index(b"HTTP/1.1 400")
    s = socket.create_connection(("127.0.0.1", r.port), 5)   # a bad request after a good one, no body
    s.sendall(b"GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\nGET /x HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n")
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 200") and out.count(b"HTTP/1.1 400") == 1, out
    assert all(b"/never" not in line for line in blue.received())


def test_queued_request_failing_early_leaves_the_queue(one_node):
    r, _ = one_node
    done: dict[str, float] = {}
    codes: list[int] = []
    t0 = time.monotonic()

    def get(name: str, path: str) -> None:
        codes.append(r.get(path)[0])
        done[name] = time.monotonic() - t0
    x = threading.Thread(target=get, args=("x", "/slow?ms=1000"))
    x.start()
    time.sleep(0.2)
    z = threading.Thread(target=get, args=("z", "/slow?ms=50"))
    z.start()
    time.sleep(0.2)
    # Y waits in the queue behind Z, then its body turns out bad
    s = socket.create_connection(("127.0.0.1", r.port), 5)
    s.sendall(b"POST /y HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 400"), out[:80]
    x.join(10)
    z.join(10)
    assert codes == [200, 200]
    assert done["z"] > done["x"] - 0.1, done          # Z still waited for X's slot (max_concurrent = 1)
    st = r.wait_status(lambda st: st["clusters"]["blue"]["active"] == 0, timeout=3)
    assert st["clusters"]["blue"]["queued"] == 0


def test_http10_gets_no_100_continue_and_forwarding_headers_are_replaced(one_node):
    r, _ = one_node
    s = socket.create_connection(("127.0.0.1", r.port), 5)
    s.sendall(b"POST /e HTTP/1.0\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    time.sleep(0.3)
    s.sendall(b"ok")
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 200") and b"100 Continue" not in out, out[:100]
    st, _, body = r.get("/f", headers={"Forwarded": "for=6.6.6.6", "X-Real-IP": "6.6.6.6"})
    hdrs = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert "forwarded" not in hdrs and "x-real-ip" not in hdrs
    assert hdrs["x-forwarded-for"] == "127.0.0.1"
