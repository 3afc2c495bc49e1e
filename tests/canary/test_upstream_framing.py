"""Misbehaving nodes (raw sockets, not llhttp): bytes after a response, bodies after HEAD/304, 101, resets,
a paused connection; none of it may reach another request or poison the pool."""
from __future__ import annotations

import http.client
import socket
import threading
import time
from typing import Callable

import pytest

from .conftest import FAST, toml_config


class ScriptedNode:
    """A node written with plain sockets. handler(method, path, sock) writes whatever it likes and returns
    False to close the connection. /readyz (health checks) always gets 200."""

    def __init__(self, handler: Callable[[bytes, bytes, socket.socket], bool], node: str = "blue-1") -> None:
        self.handler = handler
        self.node = node
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        self.requests: list[bytes] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket) -> None:
        s.settimeout(10)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                method, path = lines[0].split(b" ")[:2]
                cl = 0
                for ln in lines[1:]:
                    k, _, v = ln.partition(b":")
                    if k.strip().lower() == b"content-length":
                        cl = int(v)
                while len(buf) < cl:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[cl:]
                if path == b"/readyz":
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
                    return
                self.requests.append(method + b" " + path)
                if not self.handler(method, path, s):
                    return
        except OSError:
            return
        finally:
            s.close()

    def close(self) -> None:
        self.closed = True
        self.srv.close()


def good(s: socket.socket) -> bool:
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
    return True


def bad_handler(method: bytes, path: bytes, s: socket.socket) -> bool:
    evil = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"
    if path == b"/slowextra":        # a complete response followed at once by a further one
        time.sleep(0.6)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + evil)
    elif path == b"/slow304":        # 304 must not have a body; this one is followed by a whole response
        time.sleep(0.6)
        s.sendall(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n" + evil)
    elif path == b"/slowhead":       # HEAD answered with a body
        time.sleep(0.6)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n" + evil)
    elif path == b"/upgrade":
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nxx")
    elif path == b"/resetmid":       # close-delimited body cut by a reset
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npartial")
        time.sleep(0.2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        return False
    elif path.startswith(b"/big"):
        n = int(path[4:])
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + b"b" * n)
    else:
        return good(s)
    return True


@pytest.fixture
def scripted_router(router_factory):
    """Factory: a router over two ScriptedNodes running bad_handler (blue-1 and green-1), closed at teardown."""
    nodes: list[ScriptedNode] = []

    def make(**extra):
        node, other = ScriptedNode(bad_handler), ScriptedNode(bad_handler, "green-1")
        nodes.extend((node, other))
        cfg = toml_config({"blue": [node], "green": [other]}, access_log=False, **FAST, **extra)
        return router_factory(config=cfg)
    yield make
    for n in nodes:
        n.close()


def node_states(r) -> list[str]:
    return [n["state"] for n in r.status()["clusters"]["blue"]["nodes"]]


@pytest.mark.parametrize("path,method,first_body", [("/slowextra", "GET", b"ok"), ("/slow304", "GET", b""),
                                                    ("/slowhead", "HEAD", b"")])
def test_bytes_after_a_response_never_reach_the_next_client(scripted_router, path, method, first_body):
    r = scripted_router(limits={"queue_timeout": 5.0}, cluster_limits={"blue": {"max_concurrent": 1, "max_queue": 4}})
    results: dict[str, tuple[int, bytes]] = {}

    def first() -> None:
        st, _, body = r.get(path, method=method)
        results["x"] = (st, body)
    t = threading.Thread(target=first)
    t.start()
    time.sleep(0.25)                     # X holds the only slot; Y waits in the cluster queue
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    st, _, body = r.get("/y", conn=c)
    assert (st, body) == (200, b"good"), (path, st, body)
    st, _, body = r.get("/y2", conn=c)   # and the next one on the same client connection
    assert (st, body) == (200, b"good"), (path, st, body)
    c.close()
    t.join(5)
    assert results["x"][1] == first_body, (path, results)
    assert results["x"][0] in (200, 304)
    assert node_states(r) == ["healthy"]


def test_101_is_a_502_without_ejection(scripted_router):
    r = scripted_router()
    st, _, _ = r.get("/upgrade")
    assert st == 502
    assert node_states(r) == ["healthy"]
    assert r.get("/after")[0] == 200


def test_reset_during_close_delimited_body_is_not_complete(scripted_router):
    r = scripted_router()
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    c.request("GET", "/resetmid")
    resp = c.getresponse()
    assert resp.status == 200
    try:
        body = resp.read()
    except (http.client.IncompleteRead, OSError):
        body = None
    assert body is None, body        # the client must see the cut, not a complete body
    c.close()


def test_paused_connection_is_not_pooled_paused(make_front):
    """A slow client pauses reading on the node connection; when the response ends in that state the
    connection must not go back to the pool paused (its next request would hang -> 504 + ejection)."""
    front, client, node_side = make_front()
    front.data_received(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
    ex = front.answering
    assert ex is not None and ex.up is not None
    conn, pool = ex.up, ex.up.pool
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
    front.pause_writing()                 # the client's socket buffer is full, as a slow client's is
    assert conn.paused
    conn.data_received(b"world")          # the response ends while the node connection is paused
    assert b"helloworld" in b"".join(client.written)
    assert conn in pool.idle and not conn.paused     # pooled reading again
    front.resume_writing()
    front.data_received(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    second = front.answering
    assert second is not None and second.up is conn   # the next request takes it and is answered
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert b"".join(client.written).endswith(b"ok") and front.answering is None
