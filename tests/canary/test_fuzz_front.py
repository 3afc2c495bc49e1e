"""Hypothesis fuzzing of the HTTP front incl. request smuggling: no 5xx, router alive, nothing smuggled.

Every generated request carries a second request (`GET /smuggled-...`) *inside its body* according to
the framing it declares; a backend that ever logs that request line was reached by a smuggled request."""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import raw_exchange

from .conftest import FAST, toml_config

SMUG = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

TE_NAMES = [b"Transfer-Encoding", b"transfer-encoding", b"Transfer-encoding", b" Transfer-Encoding",
            b"Transfer-Encoding ", b"Transfer_Encoding", b"Transfer-Encoding\t", b"X-Transfer-Encoding"]
TE_VALUES = [b"chunked", b"Chunked", b" chunked", b"xchunked", b"chunked, identity", b"identity, chunked",
             b"chunked, chunked", b"chunked\x00", b"\tchunked", b"chunk", b"identity", b"gzip, chunked",
             b"chunked;q=1", b"\x0bchunked", b"chunked\x0c"]
CL_FORMS = [b"%d", b"+%d", b"%d ", b" %d", b"0%d", b"%d,%d", b"%d, %d", b"-%d", b"%d\x00", b"0x%x", b"%de0",
            b"%d.0", b"99999999999999999999%d"]
CHUNK_SIZES = [b"%x", b"%X", b"0%x", b"%x;ext=1", b"%x ", b" %x", b"-%x", b"0x%x", b"FFFFFFFFFFFFFFFFFFFF",
               b"%x\x00", b"+%x"]
JUNK = st.binary(min_size=0, max_size=12)
EOLS = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\r\r\n"])


@st.composite
def requests(draw) -> bytes:
    method = draw(st.sampled_from([b"POST", b"GET", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]))
    eol = draw(EOLS) if draw(st.integers(0, 4)) == 0 else b"\r\n"
    mode = draw(st.sampled_from(["cl", "te", "cl", "te", "both", "dup_cl", "te_variant", "cl_variant", "te_twice"]))
    payload = b"0\r\n\r\n" + SMUG
    headers = [b"Host: fuzz"]
    n = len(payload)
    chunk_fmt = b"%x" if draw(st.booleans()) else draw(st.sampled_from(CHUNK_SIZES))
    chunked_body = (chunk_fmt.replace(b"%x", b"%x" % len(SMUG)).replace(b"%X", b"%X" % len(SMUG))
                    + b"\r\n" + SMUG + b"\r\n0\r\n\r\n")
    if mode == "cl":
        headers.append(b"Content-Length: %d" % n)
        body = payload
    elif mode == "te":
        headers.append(b"Transfer-Encoding: chunked")
        body = chunked_body
    elif mode == "both":
        hs = [b"Content-Length: %d" % n, draw(st.sampled_from(TE_NAMES)) + b": " + draw(st.sampled_from(TE_VALUES))]
        headers += draw(st.permutations(hs))
        body = payload
    elif mode == "dup_cl":
        headers += [b"Content-Length: %d" % draw(st.sampled_from([0, n, 5])), b"Content-Length: %d" % n]
        body = payload
    elif mode == "te_variant":
        headers.append(draw(st.sampled_from(TE_NAMES)) + b":" + draw(st.sampled_from([b" ", b"", b"  "]))
                       + draw(st.sampled_from(TE_VALUES)))
        body = chunked_body
    elif mode == "te_twice":
        headers += [b"Transfer-Encoding: chunked", b"Transfer-Encoding: " + draw(st.sampled_from(TE_VALUES))]
        body = chunked_body
    else:
        form = draw(st.sampled_from(CL_FORMS))
        headers.append(b"Content-Length: " + (form % ((n,) * form.count(b"%"))))
        body = payload
    # random extra headers, some with NUL/CR/LF/obs-fold/garbage
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([b"X-A", b"X-D", b"X-E", b"X A", b"X-\x00", b"", b"X-B ", b"\tX-C"]))
        value = draw(st.one_of(st.just(b"ok"), JUNK))
        headers.insert(draw(st.integers(1, len(headers))), name + b": " + value)
    if draw(st.integers(0, 5)) == 0:
        headers.insert(1, b"X-Fold: a" + draw(EOLS) + draw(st.sampled_from([b" b", b"\tb"])))
    head = method + b" /fz HTTP/1.1" + eol + eol.join(headers) + eol + eol
    return head + body


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """One backend pair + router for the whole module (hypothesis runs many examples against it)."""
    from .conftest import Backend, Router, free_port
    tmp = tmp_path_factory.mktemp("fuzz")
    bs = [Backend("blue", "blue-1", free_port(), tmp / "blue.log", []).start(),
          Backend("green", "green-1", free_port(), tmp / "green.log", []).start()]
    cfg = toml_config({"blue": [bs[0]], "green": [bs[1]]}, access_log=False, **FAST,
                      share={"initial_percent": 50.0}, timeouts={"header_read": 2.0, "total": 5.0})
    (tmp / "r.toml").write_text(cfg)
    r = Router(tmp, ["--config", str(tmp / "r.toml")], {}).start()
    yield r, bs
    r.stop()
    for b in bs:
        b.kill()


def statuses(out: bytes) -> list[int]:
    codes = []
    for line in out.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 ") and line[9:12].isdigit():
            codes.append(int(line[9:12]))
    return codes


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(req=requests())
def test_fuzz_no_5xx_no_smuggling(target, req):
    r, bs = target
    out = raw_exchange(r.port, req, half_close=True)
    codes = statuses(out)
    assert all(c < 500 for c in codes), (req, out[:300])
    assert r.proc.poll() is None
    for b in bs:
        assert not any(b"smuggled" in line for line in b.received()), (req, b.received()[-3:])


@pytest.mark.parametrize("req", [
    b"POST /fz HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUG,
    b"POST /fz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + SMUG,
    b"POST /fz HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 41\r\n\r\n" + SMUG,
    b"POST /fz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 41\r\n\r\n0\r\n\r\n" + SMUG,
    b"POST /fz HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 41\r\n\r\n0\r\n\r\n" + SMUG,
    b"POST /fz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUG,
    b"POST /fz HTTP/1.1\nHost: a\nContent-Length: 41\n\n" + b"0\r\n\r\n" + SMUG,
    b"POST /fz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFF\r\n" + SMUG,
    b"POST /fz HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\nContent-Length: 41\r\n\r\n0\r\n\r\n" + SMUG,
    b"POST /fz HTTP/1.1\r\nHost: a\r\nX: a\rContent-Length: 0\r\nContent-Length: 41\r\n\r\n0\r\n\r\n" + SMUG,
    b"POST /fz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" + SMUG,
    b"POST /fz HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUG,
])
def test_known_smuggling_vectors_get_400(target, req):
    r, bs = target
    out = raw_exchange(r.port, req, half_close=True)
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    assert statuses(out) == [400]           # answered once, connection closed, nothing after it parsed
    for b in bs:
        assert not any(b"smuggled" in line for line in b.received())


def test_router_still_serves_after_fuzzing(target):
    r, _ = target
    time.sleep(0.2)
    st, h, _ = r.get("/after")
    assert st == 200 and r.proc.poll() is None
