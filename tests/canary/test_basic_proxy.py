"""Proxying basics: pin cookie, header hygiene, bodies, framing, limits."""
from __future__ import annotations

import json
import socket
import time

import pytest

from tests.support import raw_exchange, wait_for

from .conftest import FAST, pin_of, toml_config


@pytest.fixture
def setup(backends, router_factory):
    blue = backends("blue", 1)
    green = backends("green", 1)
    cfg = toml_config({"blue": blue, "green": green}, **FAST,
                      limits={"max_header_bytes": 4096, "max_body_bytes": 100_000},
                      timeouts={"header_read": 1.0, "idle": 5.0})
    return router_factory(config=cfg), blue, green


def test_pin_cookie_issued_and_stripped(setup):
    r, _, _ = setup
    st, h, body = r.get("/x", cookie="a=1; canary_pin=garbage; b=2")
    assert st == 200
    sc = h["set-cookie"]
    assert sc.startswith("canary_pin=") and "HttpOnly" in sc and "SameSite=Lax" in sc and "Path=/" in sc
    doc = json.loads(body)
    cookie = dict((k.lower(), v) for k, v in doc["headers"])["cookie"]
    assert cookie == "a=1; b=2"  # our pin never reaches the node
    assert h["x-served-by"] == "blue/blue-1"
    # a valid pin is kept: no new cookie, same cluster
    pin = pin_of(h)
    for _ in range(5):
        st, h2, body = r.get("/x", cookie=pin)
        assert st == 200 and "set-cookie" not in h2
        assert "cookie" not in dict((k.lower(), v) for k, v in json.loads(body)["headers"])


def test_forged_and_expired_pins_are_reissued(setup):
    r, _, _ = setup
    st, h, _ = r.get("/")
    name, value = pin_of(h).split("=", 1)
    bucket, issued, sig = value.split(".")
    forged = f"{name}={(int(bucket) + 1) % 10000}.{issued}.{sig}"     # another bucket, whichever it was
    expired = f"{name}={bucket}.1000.{sig}"
    for bad in (forged, expired, f"{name}=...", f"{name}=%%%%", f"{name}={value}x"):
        st, h2, _ = r.get("/", cookie=bad)
        assert st == 200 and "set-cookie" in h2, bad


def test_an_aging_pin_is_refreshed_with_the_same_bucket(setup):
    """A browser that keeps coming back keeps its cluster: its pin is re-signed, not re-drawn."""
    from canary.dataplane.pin import PinSigner

    from .conftest import PIN_SECRET

    r, _, _ = setup
    signer = PinSigner(PIN_SECRET)
    old = int(time.time()) - signer.ttl // 2 - 3600  # past half of its 30 days
    st, h, _ = r.get("/", cookie="canary_pin=" + signer.make_value(1234, old).decode())
    assert st == 200
    name, value = pin_of(h).split("=", 1)
    bucket, issued, _ = value.split(".")
    assert name == "canary_pin" and bucket == "1234" and int(issued) >= int(time.time()) - 5


def test_hop_by_hop_and_forwarded_headers(setup):
    r, _, _ = setup
    st, h, body = r.get("/h", headers={"Connection": "keep-alive, X-Secret", "X-Secret": "1", "Keep-Alive": "5",
                                         "TE": "trailers", "Upgrade-Insecure-Requests": "1",
                                         "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https",
                                         "Proxy-Connection": "x"})
    assert st == 200
    hdrs = {k.lower(): v for k, v in json.loads(body)["headers"]}
    for gone in ("connection", "x-secret", "keep-alive", "te", "proxy-connection"):
        assert gone not in hdrs
    assert hdrs["upgrade-insecure-requests"] == "1"
    assert hdrs["x-forwarded-for"] == "127.0.0.1"  # trusted_hops = 0: the client's value is overwritten
    assert hdrs["x-forwarded-proto"] == "http"
    assert hdrs["x-forwarded-host"] == f"127.0.0.1:{r.port}"


def test_bodies_streamed_and_reframed(setup):
    r, _, _ = setup
    st, _, body = r.get("/post", method="POST", body=b"x" * 50_000, headers={"Content-Type": "text/plain"})
    assert st == 200 and json.loads(body)["body_len"] == 50_000
    req = (b"POST /chunked-post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    out = raw_exchange(r.port, req)
    assert out.startswith(b"HTTP/1.1 200"), out
    assert b'"body_len": 11' in out
    # too large: 413 from the declared length, nothing forwarded
    out = raw_exchange(r.port, b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413"), out


def test_head_and_keepalive_reuse(setup):
    r, _, _ = setup
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    for i in range(20):
        st, h, body = r.get(f"/k{i}", conn=c, method="HEAD" if i % 2 else "GET")
        assert st == 200
        assert (body == b"") if i % 2 else body
    c.close()


def test_header_limit_and_slowloris(setup):
    r, _, _ = setup
    out = raw_exchange(r.port, b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431"), out[:100]
    # slowloris: a head that never completes is cut at the header read deadline (1 s here)
    s = socket.create_connection(("127.0.0.1", r.port), 5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
    t0 = time.monotonic()
    s.settimeout(5)
    data = s.recv(100)
    assert data == b"" and time.monotonic() - t0 < 3
    s.close()


def test_pipelined_requests_answered_in_order(setup):
    r, _, _ = setup
    out = raw_exchange(r.port, b"GET /p1 HTTP/1.1\r\nHost: t\r\n\r\nGET /p2 HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /p3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200") == 3
    assert out.index(b'"/p1"') < out.index(b'"/p2"') < out.index(b'"/p3"')


def test_metrics_and_access_log(setup):
    r, _, _ = setup
    r.get("/m")
    import urllib.request
    text = urllib.request.urlopen(r.admin_url + "/metrics", timeout=5).read().decode()
    assert 'canary_requests_total{cluster="blue",code_class="2xx",node="blue-1"}' in text
    assert "canary_request_duration_seconds_bucket" in text and "canary_node_healthy" in text
    assert "canary_access_log_dropped_lines_total 0.0" in text      # stdout keeps up
    time.sleep(0.3)
    log = r.stdout.read_text()
    assert '"GET /m" 200' in log and "blue/blue-1" in log


def test_trusted_hops(backends, router_factory):
    cfg = toml_config({"blue": backends("blue", 1), "green": backends("green", 1)}, access_log=False,
                      trusted_hops=1, **FAST)
    r = router_factory(config=cfg)
    st, _, body = r.get("/t", headers={"X-Forwarded-For": "6.6.6.6, 10.0.0.7", "X-Forwarded-Proto": "https"})
    hdrs = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert hdrs["x-forwarded-for"] == "10.0.0.7, 127.0.0.1"   # only the trusted right-most hop is kept
    assert hdrs["x-forwarded-proto"] == "https"


def test_workers_share_the_port(backends, router_factory):
    blue, green = backends("blue", 1), backends("green", 1)
    r = router_factory(args=["--cluster", f"blue=127.0.0.1:{blue[0].port}", "--cluster",
                             f"green=127.0.0.1:{green[0].port}", "--workers", "2", "--no-access-log",
                             "--state", "w.json"])
    for _ in range(20):
        st, h, _ = r.get("/w")
        assert st == 200 and h["x-served-by"] == "blue/blue-1"
    import subprocess
    kids = subprocess.run(["pgrep", "-P", str(r.proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(kids) == 2
    r.ramp(100)                                   # admin in worker 0; worker 1 follows through the state file
    wait_for(lambda: {r.get("/w")[1]["x-served-by"] for _ in range(10)} == {"green/green-1"}, 3,
             "both workers serving green after the ramp")


def test_response_framing_relayed(setup):
    r, _, _ = setup
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    for _ in range(3):   # same client connection survives chunked and 204 responses
        st, h, body = r.get("/chunked", conn=c)
        assert st == 200 and body == b"hello world" and h["transfer-encoding"] == "chunked"
        st, h, body = r.get("/nocontent", conn=c)
        assert st == 204 and body == b""
        st, h, body = r.get("/eof", conn=c)      # close-delimited from the node -> chunked to the client
        assert st == 200 and body == b"until-eof-body" and h["x-served-by"] == "blue/blue-1"
    c.close()
    out = raw_exchange(r.port, b"GET /eof HTTP/1.0\r\nHost: t\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"\r\n\r\nuntil-eof-body")
    out = raw_exchange(r.port, b"GET /chunked HTTP/1.0\r\nHost: t\r\n\r\n")
    assert out.endswith(b"\r\n\r\nhello world") and b"chunked" not in out.lower()


def test_expect_100_continue(setup):
    r, _, _ = setup
    s = socket.create_connection(("127.0.0.1", r.port), 5)
    s.sendall(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    first = s.recv(100)
    assert first.startswith(b"HTTP/1.1 100 Continue")
    s.sendall(b"hello")
    s.settimeout(5)
    data = b""
    while b'"body_len"' not in data:
        data += s.recv(65536)
    assert b'"body_len": 5' in data and b"expect" not in data.lower().split(b"\r\n\r\n", 1)[1]
    s.close()
