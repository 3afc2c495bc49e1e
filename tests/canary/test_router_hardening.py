"""The router's trust and framing edges: forwarded headers only from trusted_proxies, node responses capped and
strictly framed, health paths answered by the router, an access log without query strings, pin key rotation."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from canary.config.loading import from_dict
from canary.config.settings import ConfigError
from canary.dataplane.pin import BUCKETS, PinSigner
from canary.dataplane.router_paths import router_path
from tests.support import read_all, wait_for

from .conftest import FAST, PIN_SECRET, pin_of, toml_config
from .test_upstream_framing import ScriptedNode, good

BASE = {"clusters": [{"name": "a", "nodes": ["127.0.0.1:1"]}, {"name": "b", "nodes": ["127.0.0.1:2"]}]}


def request_from(port: int, source: str, raw: bytes) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), 5, source_address=(source, 0))
    s.sendall(raw)
    out = read_all(s, b"}")
    s.close()
    return out


def echoed_headers(out: bytes) -> dict[str, str]:
    return {k.lower(): v for k, v in json.loads(out.split(b"\r\n\r\n", 1)[1])["headers"]}


def test_forwarded_headers_are_honoured_only_from_trusted_proxies(backends, router_factory) -> None:
    blue, green = backends("blue", 1), backends("green", 1)
    r = router_factory(config=toml_config({"blue": blue, "green": green}, access_log=False, trusted_hops=1,
                                          trusted_proxies=["127.0.0.1/32"], **FAST))
    forged = (b"GET /x HTTP/1.1\r\nHost: login.test\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
              b"X-Forwarded-Host: evil.test\r\nConnection: close\r\n\r\n")
    trusted = echoed_headers(request_from(r.port, "127.0.0.1", forged))
    assert trusted["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert (trusted["x-forwarded-proto"], trusted["x-forwarded-host"]) == ("https", "evil.test")
    direct = echoed_headers(request_from(r.port, "127.0.0.5", forged))   # not a proxy: its claims are dropped
    assert direct["x-forwarded-for"] == "127.0.0.5"
    assert (direct["x-forwarded-proto"], direct["x-forwarded-host"]) == ("http", "login.test")


@pytest.mark.parametrize("value", [["10.0.0.300/8"], ["10.0.0.1/8"], "127.0.0.0/8", [1]])
def test_bad_trusted_proxies_name_the_key(value) -> None:
    with pytest.raises(ConfigError, match=r"^trusted_proxies: (expected a list|.* is not a CIDR)"):
        from_dict({**BASE, "trusted_proxies": value})


def test_trusted_proxy_flag_replaces_the_list() -> None:
    from canary.cli.main import build_parser, config_from_args
    a = build_parser().parse_args(["serve", "--cluster", "a=127.0.0.1:1", "--cluster", "b=127.0.0.1:2",
                                   "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "fd00::/8"])
    assert config_from_args(a).trusted_proxies == ["10.0.0.0/8", "fd00::/8"]
    assert from_dict(BASE).trusted_proxies == ["127.0.0.0/8", "::1/128"]


def hostile(method: bytes, path: bytes, s: socket.socket) -> bool:
    if path == b"/bighead":          # one 70 KiB header
        s.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\nContent-Length: 2\r\n\r\nok")
    elif path == b"/manyheaders":
        s.sendall(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(150))
                  + b"Content-Length: 2\r\n\r\nok")
    elif path == b"/endless":        # a head that never ends, in small pieces
        s.sendall(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        try:
            for _ in range(200):
                s.sendall(b"a" * 8192)
                time.sleep(0.002)
        except OSError:
            pass                     # the router gave up and closed: good
        return False
    elif path.startswith(b"/te/"):   # a transfer coding other than plain chunked
        coding = path[4:].replace(b"_", b", ")
        s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    else:
        return good(s)
    return True


@pytest.fixture
def hostile_router(router_factory):
    nodes = [ScriptedNode(hostile), ScriptedNode(hostile, "green-1")]
    yield router_factory(config=toml_config({"blue": nodes[:1], "green": nodes[1:]}, access_log=False, **FAST,
                                            outlier_detection={"base_ejection_time": 0.2}))
    for n in nodes:
        n.close()


@pytest.mark.parametrize("path", ["/bighead", "/manyheaders", "/endless", "/te/gzip", "/te/gzip_chunked",
                                  "/te/identity"])
def test_oversized_heads_and_other_transfer_codings_are_a_502(hostile_router, path) -> None:
    r = hostile_router
    t0 = time.monotonic()
    status, headers, body = r.get(path)
    assert status == 502 and headers["x-served-by"] == "canary-router", (status, body[:100])
    assert time.monotonic() - t0 < 2
    with __import__("urllib.request").request.urlopen(r.admin_url + "/metrics", timeout=5) as m:
        assert 'canary_local_responses_total{code="502"} 1.0' in m.read().decode()
    time.sleep(0.3)                  # past the short ejection
    assert r.get("/fine")[:1] == (200,)


def test_chunked_from_a_node_is_still_relayed(hostile_router) -> None:
    status, _, body = hostile_router.get("/te/chunked")
    assert (status, body) == (200, b"hello")


@pytest.mark.parametrize("url, expected", [
    (b"/readyz", b"/readyz"), (b"/readyz?x=1", b"/readyz"), (b"//readyz", b"/readyz"), (b"/readyz/", b"/readyz"),
    (b"/%72eadyz", b"/readyz"), (b"/%2572eadyz", b"/readyz"), (b"/READYZ", b"/readyz"), (b"/./healthz", b"/healthz"),
    (b"/../metrics", b"/metrics"), (b"/healthz;p", b"/healthz"), (b"/%2Fmetrics", b"/metrics"),
    (b"/", None), (b"/api/session", None), (b"/readyzz", None), (b"/healthz-x", None), (b"/login/", None),
    (b"/r/readyz", None), (b"*", None),
    (b"/x/../readyz", None),   # gunicorn and Django leave dot segments alone: this is not /readyz on a node
])
def test_router_path_spellings(url, expected) -> None:
    assert router_path(url) == expected


def test_health_path_flood_never_reaches_a_node(backends, router_factory) -> None:
    blue, green = backends("blue", 1), backends("green", 1)
    r = router_factory(config=toml_config({"blue": blue, "green": green}, access_log=False, **FAST))
    assert r.get("/healthz")[0::2] == (200, b"ok\n")
    assert r.get("/readyz?flood")[0] == 200 and r.get("/metrics?flood")[0] == 404
    errors: list[object] = []

    def flood() -> None:
        s = socket.create_connection(("127.0.0.1", r.port), 5)
        for i in range(150):
            spelling = (b"/readyz", b"//readyz", b"/%72eadyz", b"/readyz/", b"/healthz", b"/metrics")[i % 6]
            s.sendall(b"GET " + spelling + b"?flood HTTP/1.1\r\nHost: t\r\n\r\n")
            out = read_all(s, b"\n", 5)
            if b"X-Served-By: canary-router" not in out:
                errors.append(out[:100])
        s.close()
    threads = [threading.Thread(target=flood) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seen = blue[0].received() + green[0].received()
    assert seen and not [ln for ln in seen if b"flood" in ln]      # only the router's own health checks
    st = r.status()
    assert [n["state"] for c in st["clusters"].values() for n in c["nodes"]] == ["healthy", "healthy"]
    for b in blue + green:
        b.kill()
    r.wait_status(lambda s: not any(c["available"] for c in s["clusters"].values()))
    status, headers, _ = r.get("/readyz")
    assert status == 503 and headers["x-served-by"] == "canary-router"


def test_access_log_drops_query_strings(backends, router_factory) -> None:
    blue, green = backends("blue", 1), backends("green", 1)
    r = router_factory(config=toml_config({"blue": blue, "green": green}, **FAST))
    assert r.get("/reset?token=s3cr3t-value&email=a%40b.test")[0] == 200
    wait_for(lambda: b'"GET /reset"' in r.stdout.read_bytes(), 5, "the access log line")
    log = r.stdout.read_bytes()
    assert b'"GET /reset"' in log and b"s3cr3t" not in log and b"a%40b" not in log


NEW_SECRET = "a-new-pin-secret-0123456789"


def test_pin_key_rotation_keeps_every_bucket(backends, router_factory) -> None:
    blue, green = backends("blue", 1), backends("green", 1)
    cfg = toml_config({"blue": blue, "green": green}, access_log=False, **FAST, share={"initial_percent": 50})
    r = router_factory(config=cfg, env={"CANARY_PIN_SECRET": NEW_SECRET, "CANARY_PIN_SECRET_FALLBACKS": PIN_SECRET})
    old, new, now = PinSigner(PIN_SECRET), PinSigner(NEW_SECRET), time.time()
    for bucket, cluster in ((100, "green"), (BUCKETS - 1, "blue")):
        status, headers, _ = r.get("/", cookie="canary_pin=" + old.make_value(bucket, int(now)).decode())
        assert status == 200 and headers["x-served-by"].startswith(cluster)
        value = pin_of(headers).split("=", 1)[1].encode()
        assert new.check(value, now)[0] == bucket and old.check(value, now)[0] == -1   # same bucket, new key
        assert pin_of(r.get("/", cookie="canary_pin=" + value.decode())[1]) is None  # then simply kept
    stranger = PinSigner("some-unknown-key-0123456789")
    drawn = set()
    for _ in range(20):
        value = pin_of(r.get("/", cookie="canary_pin=" + stranger.make_value(100, int(now)).decode())[1])
        drawn.add(new.check(value.split("=", 1)[1].encode(), now)[0])
    assert -1 not in drawn and len(drawn) > 1      # an unknown key's pin is drawn again, at random


def test_a_short_fallback_pin_key_is_refused(tmp_path) -> None:
    import os
    import subprocess
    import sys
    env = dict(os.environ, CANARY_ADMIN_TOKEN="t" * 32, CANARY_PIN_SECRET=NEW_SECRET,
               CANARY_PIN_SECRET_FALLBACKS=f"{PIN_SECRET},short")
    p = subprocess.run([sys.executable, "-m", "canary", "serve", "--cluster", "a=127.0.0.1:1", "--cluster",
                        "b=127.0.0.1:2", "--state", str(tmp_path / "s.json")], env=env, capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 2
    assert p.stderr.strip() == "canary: error: CANARY_PIN_SECRET_FALLBACKS: must be at least 16 characters (got 5)"
