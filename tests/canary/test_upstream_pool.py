"""Node connection pool: a connection that dies before the exchange can use it is a connect failure, not a hang."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvloop

from canary.cli.main import build_parser, config_from_args
from canary.cli.router_process import RouterProcess
from canary.dataplane.upstream_pool import Pool, UpstreamConn


class Recorder:
    """Stands in for the Exchange: records what the pool tells it (the pool calls nothing else)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.done = asyncio.Event()

    def attach(self, conn: UpstreamConn) -> None:
        self.events.append(("attach", conn))
        self.done.set()

    def connect_failed(self, node: Any, reason: str) -> None:
        self.events.append(("connect_failed", reason))
        self.done.set()


def node_at(tmp_path, port: int) -> Any:
    args = build_parser().parse_args(["serve", "--cluster", f"blue=127.0.0.1:{port}", "--cluster",
                                      f"green=127.0.0.1:{port}", "--no-access-log",
                                      "--state", str(tmp_path / "state.json")])
    return RouterProcess(config_from_args(args), "t" * 32, "p" * 32).nodes[0]


async def connect_once(tmp_path) -> list[tuple[str, Any]]:
    """Connect a pool to a real listening node and report what the exchange was told."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(node_at(tmp_path, port), asyncio.get_running_loop(), 1.0)
    ex = Recorder()
    pool.connect(ex)
    await asyncio.wait_for(ex.done.wait(), 5)
    server.close()
    return ex.events


def test_a_live_connection_is_attached(tmp_path):
    events = uvloop.run(connect_once(tmp_path))
    assert [e[0] for e in events] == ["attach"]
    events[0][1].close()


def test_a_connection_reset_before_first_use_is_a_connect_failure(tmp_path, monkeypatch):
    """A node killed right after accepting: the reset reaches the router before the connect task resumes.
    Attaching would write to a closed transport (uvloop raises) and leave the request hanging until its
    deadline; instead the exchange hears of a connect failure and is retried on another node."""
    made = UpstreamConn.connection_made

    def made_then_reset(self: UpstreamConn, transport: Any) -> None:
        made(self, transport)
        transport.abort()          # what a peer's RST does to the transport, before connection_lost runs

    monkeypatch.setattr(UpstreamConn, "connection_made", made_then_reset)
    events = uvloop.run(connect_once(tmp_path))
    assert events == [("connect_failed", "connect_failure")]


@pytest.mark.parametrize("closing", [True, False])
def test_pool_never_hands_out_a_closing_connection(tmp_path, closing):
    async def main() -> Any:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        pool = Pool(node_at(tmp_path, port), loop, 1.0)
        _, conn = await loop.create_connection(lambda: UpstreamConn(pool), "127.0.0.1", port)
        pool.release(conn, 0.0)
        if closing:
            conn.transport.abort()     # reset seen, connection_lost not yet delivered
        got = pool.get()
        conn.transport.close()
        server.close()
        return got, conn

    got, conn = uvloop.run(main())
    assert got is (None if closing else conn)
