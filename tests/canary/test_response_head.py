"""The response head the client gets, whatever the chunking of the node's bytes: interim 1xx answers left out,
hop-by-hop headers dropped (leading whitespace of a value too), the caps on size and count kept."""
from __future__ import annotations

import pytest

REQUEST = b"GET /api/session HTTP/1.1\r\nHost: login.example.test\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
            b"Content-Type: application/json\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n"
            b"X-Served-By: blue/blue-1\r\nVary:  Cookie \r\n\r\n{}")


def answer(make_front, chunks: list[bytes]) -> bytes:
    """What the client gets for REQUEST when the node answers with `chunks`, one data_received each."""
    front, client_side, _ = make_front()
    front.data_received(REQUEST)
    conn = front.answering.up
    for c in chunks:
        conn.data_received(c)
    reply = b"".join(client_side.written)
    return b"".join(ln for ln in reply.splitlines(keepends=True) if not ln.startswith(b"Set-Cookie: canary_pin="))


def relayed_headers(reply: bytes) -> list[bytes]:
    head = reply.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")[1:]


def test_hop_by_hop_headers_are_dropped_and_the_rest_relayed_in_order(make_front):
    reply = answer(make_front, [RESPONSE])
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\n{}")
    assert relayed_headers(reply) == [b"Server: gunicorn", b"Content-Type: application/json",
                                      b"X-Served-By: blue/blue-1", b"Vary: Cookie ", b"Content-Length: 2"]


def test_every_split_of_the_head_gives_the_same_answer(make_front):
    whole = answer(make_front, [RESPONSE])
    for at in range(1, len(RESPONSE)):
        assert answer(make_front, [RESPONSE[:at], RESPONSE[at:]]) == whole, at
    assert answer(make_front, [bytes([b]) for b in RESPONSE]) == whole


@pytest.mark.parametrize("interim", [b"HTTP/1.1 100 Continue\r\n\r\n",
                                     b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"])
def test_an_interim_answer_is_not_relayed_in_any_chunking(make_front, interim):
    whole = answer(make_front, [RESPONSE])
    both = interim + RESPONSE
    assert answer(make_front, [both]) == whole
    for at in range(1, len(both), 7):
        assert answer(make_front, [both[:at], both[at:]]) == whole, at


def test_a_node_answer_without_its_own_served_by_gets_the_routers(make_front):
    reply = answer(make_front, [b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"])
    assert reply.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert relayed_headers(reply)[0] == b"X-A: 1" and b"X-Served-By: " in reply


@pytest.mark.parametrize("count, ok", [(100, True), (101, False)])
def test_the_header_count_cap(make_front, count, ok):
    """limits.max_response_headers (100) counts the headers relayed; framing ones are the router's own."""
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(count))
    reply = answer(make_front, [head + b"Content-Length: 0\r\n\r\n"])
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n" if ok else b"HTTP/1.1 502 ")


def test_an_unfinished_head_over_the_cap_is_a_502_however_it_arrives(make_front):
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000     # the default cap is 64 KiB
    assert answer(make_front, [big]).startswith(b"HTTP/1.1 502 ")
    assert answer(make_front, [big[i:i + 1000] for i in range(0, len(big), 1000)]).startswith(b"HTTP/1.1 502 ")


def test_the_names_relayed_without_a_look_are_never_special():
    """upstream_pool._RELAYED skips lower-casing: none may be a framing or hop-by-hop header, or X-Served-By."""
    from canary.dataplane.upstream_pool import _RELAYED, _RESP_DROP
    assert _RELAYED and not {n.lower() for n in _RELAYED} & (_RESP_DROP | {b"x-served-by"})


def test_the_framing_spellings_looked_up_are_the_dropped_names():
    """upstream_pool._DROP_SPELLED skips lower-casing of framing headers: each value must be its key's lower()
    and one of _RESP_DROP, or a node's Content-Length or Connection would be relayed or misread."""
    from canary.dataplane.upstream_pool import _DROP_SPELLED, _RESP_DROP
    assert _DROP_SPELLED and all(lname == name.lower() and lname in _RESP_DROP for name, lname in _DROP_SPELLED.items())
