"""What the front refuses and how an operator sees it: refused heads in the access log (rate-limited, nothing of
the request in it), and chunk extensions capped on both sides (RFC 9112 §7.1.1), through real routers and nodes."""
from __future__ import annotations

import json
import re
import socket
import time
import urllib.request

import pytest

from canary.dataplane.access_log import REFUSALS_PER_SECOND
from canary.dataplane.chunk_framing import MAX_CHUNK_EXTENSIONS
from tests.support import raw_exchange, read_all, wait_for

from .conftest import FAST, toml_config
from .test_upstream_framing import ScriptedNode, good

CHUNKED = b"POST /%s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
REFUSED = re.compile(r'^(\S+Z) 127\.0\.0\.1 "-" (\d{3}) 0 - - attempts=0 bucket=- refused:([a-z_]+)$')


@pytest.fixture
def logged_router(backends, router_factory):
    """A router with its access log on, over one demo backend per cluster (blue, green); 127.0.0.1 is not a
    trusted proxy here, so the per-client connection cap applies to the tests' connections."""
    blue, green = backends("blue", 1), backends("green", 1)
    cfg = toml_config({"blue": blue, "green": green}, **FAST, trusted_proxies=[],
                      limits={"max_connections_per_client": 4})
    return router_factory(config=cfg), blue + green


def metric(r, name: str) -> float:
    with urllib.request.urlopen(r.admin_url + "/metrics", timeout=5) as m:
        found = re.search(rf"^{name} (\S+)$", m.read().decode(), re.M)
    assert found, name
    return float(found.group(1))


def refusals(r) -> tuple[list[tuple[str, str, str]], int]:
    """The refused-request lines of the router's access log, and how many the summary lines left out."""
    text = r.stdout.read_text(errors="replace")
    lines = [m.groups() for m in map(REFUSED.match, text.splitlines()) if m]
    return lines, sum(map(int, re.findall(r"^\S+Z refused requests: (\d+) more not logged$", text, re.M)))


def test_a_flood_of_bad_heads_is_logged_up_to_the_cap_and_the_rest_is_counted(logged_router) -> None:
    """1,000 bad requests: at most REFUSALS_PER_SECOND lines per second, each with the status, a fixed reason
    and the client address; summary lines and the metric account for every other one; no byte of the request
    (its secret query, its control character) reaches the log."""
    r, _ = logged_router
    bad = b"GET /reset?token=s3cr3t-Value\x01 HTTP/1.1\r\nHost: t\r\n\r\n"
    for _ in range(1000):
        assert raw_exchange(r.port, bad).startswith(b"HTTP/1.1 400 ")

    def all_accounted() -> bool:
        lines, left_out = refusals(r)
        return len(lines) + left_out == 1000
    wait_for(all_accounted, 5, "every refusal logged or summed up")
    lines, left_out = refusals(r)
    assert {(status, reason) for _, status, reason in lines} == {("400", "bad_head")}
    per_second: dict[str, int] = {}
    for ts, _, _ in lines:
        per_second[ts] = per_second.get(ts, 0) + 1
    assert max(per_second.values()) <= REFUSALS_PER_SECOND and left_out > 0
    assert metric(r, "canary_access_log_refusals_not_logged_total") == left_out
    assert metric(r, "canary_bad_requests_total") == 1000
    log = r.stdout.read_bytes()
    assert b"s3cr3t" not in log and b"/reset" not in log and b"\x01" not in log


def test_each_refusal_names_its_reason(logged_router) -> None:
    r, _ = logged_router
    cases = {b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n": ("431", "head_too_large"),
             b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n": ("413", "body_too_large"),
             b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n": ("400", "bad_head"),
             b"GET / HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n": ("417", "bad_expect")}
    for raw, (status, _) in cases.items():
        assert raw_exchange(r.port, raw).startswith(b"HTTP/1.1 " + status.encode())
    idle = [socket.create_connection(("127.0.0.1", r.port), 5) for _ in range(4)]   # the per-client cap
    assert raw_exchange(r.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").startswith(b"HTTP/1.1 429 ")
    for s in idle:
        s.close()
    expected = [*cases.values(), ("429", "too_many_connections")]
    wait_for(lambda: len(refusals(r)[0]) == len(expected), 5, "the refusal lines")
    assert [(status, reason) for _, status, reason in refusals(r)[0]] == expected


@pytest.mark.parametrize("writes", [1, 20], ids=["one write", "trickled"])
def test_chunk_extensions_over_the_cap_are_a_400_rfc9112_7_1_1(logged_router, writes) -> None:
    """A 20,000-byte chunk extension, sent at once or in 20 pieces: 400, closed, and no node sees the request."""
    r, nodes = logged_router
    path = b"ext%d" % writes
    body = b"3;" + b"e" * 20000 + b"\r\nabc\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", r.port), 5) as s:
        s.sendall(CHUNKED % path)
        step = -(-len(body) // writes)
        try:
            for i in range(0, len(body), step):
                s.sendall(body[i:i + step])
                time.sleep(0.01 if writes > 1 else 0)
        except OSError:
            pass                                      # refused and closed before the last piece: good
        out = read_all(s)
    assert out.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in out
    assert not [ln for n in nodes for ln in n.received() if path in ln]
    wait_for(lambda: b'"POST /' + path + b'" 400 0 ' in r.stdout.read_bytes(), 5, "its access log line")
    assert r.stdout.read_bytes().split(b'"POST /' + path + b'" 400 0 ', 1)[1].split(b"\n")[0].endswith(b" bad_chunk")


def test_small_chunk_extensions_are_accepted_and_never_forwarded(logged_router, make_front) -> None:
    """Legal extensions within the cap (here one per chunk, 200 chunks): the node gets the data re-framed
    without them, so what it parses is exactly what the router counted."""
    r, _ = logged_router
    chunks = b"".join(b"1;name=%d;q=\"a b\"\r\n%c\r\n" % (i, 97 + i % 26) for i in range(200))
    out = raw_exchange(r.port, CHUNKED % b"small" + chunks + b"0\r\n\r\n", until=b"}")
    assert out.startswith(b"HTTP/1.1 200 ")
    echoed = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert echoed["body_len"] == 200 and ["Transfer-Encoding", "chunked"] in echoed["headers"]
    front, client_side, node_side = make_front()
    front.data_received(CHUNKED % b"x" + b"3;ext=v\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert b"".join(node_side.written).endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n") and not client_side.closed


def test_extension_bytes_just_under_the_cap_pass_and_just_over_are_refused(make_front) -> None:
    sent = {}
    for size in (MAX_CHUNK_EXTENSIONS - 100, MAX_CHUNK_EXTENSIONS + 100):
        front, client_side, node_side = make_front()
        front.data_received(CHUNKED % b"x" + b"3;" + b"e" * size + b"\r\nabc\r\n0\r\n\r\n")
        sent[size] = (b"".join(client_side.written)[:13], bool(node_side.written))
    assert sent == {MAX_CHUNK_EXTENSIONS - 100: (b"", True), MAX_CHUNK_EXTENSIONS + 100: (b"HTTP/1.1 400 ", False)}


def chunky(method: bytes, path: bytes, s: socket.socket) -> bool:
    """A node answering chunked with extensions: small ones (/small), or one that never ends (/endless)."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    if path == b"/small":
        s.sendall(head + b"5;a=b\r\nhello\r\n0\r\n\r\n")
    elif path == b"/endless":
        s.sendall(head + b"5\r\nhello\r\n5;ext=")
        try:
            for _ in range(1000):    # 5 s of it, unless the router closes first
                s.sendall(b"e" * 1000)
                time.sleep(0.005)
        except OSError:
            pass                     # the router gave up and closed: good
        return False
    else:
        return good(s)
    return True


def test_a_node_s_endless_chunk_extension_is_cut_and_the_node_ejected(router_factory) -> None:
    """The response side: llhttp skips a node's extensions too, so they are counted the same way; past the
    cap the client's response is cut (its head and first chunk already went out) and the node is ejected."""
    nodes = [ScriptedNode(chunky), ScriptedNode(chunky, "green-1")]
    r = router_factory(config=toml_config({"blue": nodes[:1], "green": nodes[1:]}, access_log=False, **FAST))
    try:
        assert r.get("/small")[0::2] == (200, b"hello")
        with socket.create_connection(("127.0.0.1", r.port), 5) as s:
            t0 = time.monotonic()
            s.sendall(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
            head = read_all(s, b"hello\r\n")
            rest = read_all(s)                   # until the router cuts it
        assert head.startswith(b"HTTP/1.1 200 ") and rest == b"" and time.monotonic() - t0 < 2
        r.wait_status(lambda st: any(n["state"] != "healthy" for c in st["clusters"].values()
                                     for n in c["nodes"]), 5)
    finally:
        for n in nodes:
            n.close()


@pytest.mark.parametrize("after", [CHUNKED % b"c" + b"3\r\nxyz\r\n0\r\n\r\n", b"\x01\x02 bad\r\n\r\n"],
                         ids=["another chunked request", "a bad head"])
def test_a_chunked_request_ended_in_a_read_that_goes_on_still_reaches_its_node(make_front, after) -> None:
    """The framing of a read shared with another message is not counted, but the complete request in it is
    forwarded (RFC 9112 §9.3.2, pipelining) whatever follows it."""
    front, _client_side, node_side = make_front()
    front.data_received(CHUNKED % b"b" + b"3\r\nabc\r\n0\r\n\r\n" + after)
    sent = b"".join(node_side.written)
    assert sent.startswith(b"POST /b HTTP/1.1\r\n") and sent.endswith(b"3\r\nabc\r\n0\r\n\r\n"), sent
