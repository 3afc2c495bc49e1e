"""Slow request bodies: small bodies are read whole by the router before a node is chosen, so trickling clients
hold no node thread and no concurrency slot; whole-body deadline, body cap, per-client cap."""
from __future__ import annotations

import socket
import threading
import time
import urllib.request

import requests
from requests.adapters import HTTPAdapter

from tests.conftest import create_user_in
from tests.support import Browser, read_all

from .conftest import FAST, toml_config
from .test_login_cluster import login_cluster_config

EMAIL, PASSWORD = "sam@example.test", "a password typed past slow clients"


class FromAddress(HTTPAdapter):
    """requests from a given loopback address (all of 127/8 is loopback on Linux): another client."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def in_flight(r) -> tuple[int, int]:
    """(requests in flight on nodes, concurrency slots held) across both clusters, from the router's status."""
    st = r.status()["clusters"].values()
    return sum(n["outstanding"] for c in st for n in c["nodes"]), sum(c["active"] for c in st)


def slow_post(port: int, head: bytes, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), 10, source_address=(source, 0))
    s.sendall(head)
    return s


# Runs on the compiled modules only (NOT_TWICE in test_compiled_modules.py): its login nodes take about 15 s.
def test_slow_login_bodies_hold_no_node_thread_and_another_client_is_served(stack, router_factory) -> None:
    """64 trickling POST /login/ bodies from 127.0.0.1 against single-threaded gunicorn nodes: a logged-in user
    at 127.0.0.2 keeps getting fast answers, no node sees a slow request, and the slow ones end in 408."""
    blue = stack("blue-1", cluster="blue", LOGINSVC_THREADS="1", LOGINSVC_TRUSTED_PROXY_HOPS="1")
    green = stack("green-1", cluster="green", LOGINSVC_THREADS="1", LOGINSVC_TRUSTED_PROXY_HOPS="1")
    create_user_in(blue, EMAIL, PASSWORD)
    router = router_factory(config=login_cluster_config(blue, green) + "[timeouts]\nbody_read = 3.0\n")
    base = f"http://127.0.0.1:{router.port}"
    user = Browser(base)
    user.mount("http://", FromAddress("127.0.0.2"))
    assert user.login(EMAIL, PASSWORD).status_code == 200

    # the attacker has a CSRF cookie, so Django would read the form body (and wait for it) on the node
    csrf = requests.get(base + "/api/session", timeout=5).cookies["csrftoken"]
    form = b"csrfmiddlewaretoken=" + csrf.encode() + b"&username=x%40example.test&password=" + b"p" * 120
    head = (b"POST /login/ HTTP/1.1\r\nHost: login.test\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Cookie: csrftoken=" + csrf.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(form))
    slow = [slow_post(router.port, head + form[:1]) for _ in range(64)]
    stop = threading.Event()

    def trickle() -> None:              # one more byte per client every 0.2 s: never idle, never done
        i = 1
        while not stop.wait(0.2) and i < len(form) - 1:
            for s in slow:
                try:
                    s.sendall(form[i:i + 1])
                except OSError:
                    pass
            i += 1
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        worst, held = 0.0, []
        started = time.monotonic()
        while time.monotonic() - started < 2.5:      # the attack is on all along (body_read = 3 s)
            t0 = time.monotonic()
            reply = user.call("GET", "/api/session", timeout=2)
            worst = max(worst, time.monotonic() - t0)
            assert reply.status_code == 200 and reply.json()["email"] == EMAIL, reply.text[:200]
            held.append(in_flight(router))
            time.sleep(0.05)
        assert worst < 0.5, worst
        assert set(held) == {(0, 0)}, held           # no node request and no slot for any slow body
        assert "/login/" not in blue.log() + green.log()
    finally:
        stop.set()
        t.join()
    answers = [read_all(s, timeout=5) for s in slow]
    for s in slow:
        s.close()
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), {a[:40] for a in answers}
    # a body that does arrive whole (however slowly, within body_read) is then sent to a node at once
    s = slow_post(router.port, head + form[:10])
    time.sleep(0.5)
    s.sendall(form[10:])
    out = read_all(s, b"\r\n\r\n")
    assert b"X-Served-By: canary-router" not in out and b"X-Served-By: " in out, out[:300]   # a node's answer
    s.close()


def one_router(backends, router_factory, **limits):
    """A router over one demo backend per cluster; `limits` and the timeouts below are the ones under test."""
    blue, green = backends("blue", 1), backends("green", 1)
    cfg = toml_config({"blue": blue, "green": green}, access_log=False, **FAST, **limits)
    return router_factory(config=cfg), blue[0], green[0]


def test_whole_body_deadline_is_408_even_for_a_steady_trickle(backends, router_factory) -> None:
    r, blue, green = one_router(backends, router_factory, timeouts={"body_read": 1.0, "body_idle": 5.0})
    s = slow_post(r.port, b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\na")
    t0 = time.monotonic()
    for _ in range(4):
        time.sleep(0.2)
        s.sendall(b"b")
        assert in_flight(r) == (0, 0)
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 408") and b"Connection: close" in out, out[:80]
    assert 0.9 < time.monotonic() - t0 < 2.5
    assert not [ln for ln in blue.received() + green.received() if ln.startswith(b"POST")]
    assert [n["state"] for c in r.status()["clusters"].values() for n in c["nodes"]] == ["healthy", "healthy"]


def test_bodies_over_the_node_limit_are_413(backends, router_factory) -> None:
    r, _, _ = one_router(backends, router_factory)
    s = slow_post(r.port, b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 65537\r\nExpect: 100-continue\r\n\r\n")
    assert read_all(s).startswith(b"HTTP/1.1 413")     # at once, without a 100 Continue: the body is never sent
    s.close()
    chunk = b"a" * 40000
    s = slow_post(r.port, b"POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2)
    assert read_all(s).startswith(b"HTTP/1.1 413")     # decoded size 80,000 > 64 KiB
    s.close()
    assert r.get("/p", method="POST", body=b"x" * 65536)[0] == 200


def test_buffered_body_gets_100_continue_from_the_router_and_chunked_is_read_whole(backends, router_factory) -> None:
    r, _, _ = one_router(backends, router_factory)
    s = slow_post(r.port, b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert read_all(s, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert in_flight(r) == (0, 0)
    s.sendall(b"hello")
    out = read_all(s, b"}")
    assert b" 200 " in out.split(b"\r\n", 1)[0] and b'"body_len": 5' in out and b"100 Continue" not in out   # only one
    s.close()
    s = slow_post(r.port, b"POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    time.sleep(0.3)
    assert in_flight(r) == (0, 0)                     # half a chunked body: still nothing on a node
    s.sendall(b"6\r\n world\r\n0\r\n\r\n")
    out = read_all(s, b"}")
    assert b'"body_len": 11' in out and b"transfer-encoding" in out.lower(), out
    s.close()


def test_a_large_body_config_still_streams(backends, router_factory) -> None:
    r, _, _ = one_router(backends, router_factory, limits={"max_body_bytes": 1 << 20, "buffer_body_bytes": 1024})
    s = slow_post(r.port, b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n" + b"x" * 50000)
    time.sleep(0.3)
    assert in_flight(r) == (1, 1)                     # above the buffer size: on its node while still arriving
    s.sendall(b"x" * 150000)
    out = read_all(s, b"}")
    assert b'"body_len": 200000' in out, out[:300]
    s.close()


def test_connections_per_client_address_are_capped(backends, router_factory) -> None:
    r, _, _ = one_router(backends, router_factory, trusted_proxies=["127.0.0.1/32"],
                         limits={"max_connections_per_client": 3})
    held = [slow_post(r.port, b"", "127.0.0.3") for _ in range(3)]
    time.sleep(0.2)
    extra = slow_post(r.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", "127.0.0.3")
    out = read_all(extra)
    assert out.startswith(b"HTTP/1.1 429") and b"too many connections" in out, out[:120]
    other = slow_post(r.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "127.0.0.4")
    assert read_all(other).startswith(b"HTTP/1.1 200")            # another address is not affected
    proxied = [slow_post(r.port, b"", "127.0.0.1") for _ in range(5)]   # a trusted proxy carries many clients
    time.sleep(0.2)
    assert r.get("/")[0] == 200
    held.pop().close()
    time.sleep(0.3)
    again = slow_post(r.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "127.0.0.3")
    assert read_all(again).startswith(b"HTTP/1.1 200")            # a freed place is usable again
    for s in held + proxied + [extra, other, again]:
        s.close()
    with urllib.request.urlopen(r.admin_url + "/metrics", timeout=5) as m:
        assert "canary_client_connections_refused_total 1.0" in m.read().decode()
