"""The router's per-request Python in-process: one request and its response, no sockets, no event loop wake-ups.

Timings on a shared VM swing; instruction counts do not. Both, for the figures in docs/benchmarks.md:

    .venv/bin/python -m loadtests.bench.hot_path --request browser            # microseconds per request
    .venv/bin/python -m loadtests.bench.hot_path --request browser --instructions   # callgrind, ~1 min
    CANARY_PURE_PYTHON=1 .venv/bin/python -m loadtests.bench.hot_path ...            # the plain-Python modules
    .venv/bin/python -m loadtests.bench.hot_path --request browser --mirroring       # while shadow traffic is on

--instructions runs this module twice under valgrind's callgrind (500 and 4,500 requests, hash seed 0) and
divides the difference by 4,000: start-up and warm-up cancel out. `make bench` does both when valgrind is there.

The node and client connections write into a list: this measures the router's own work, nothing else.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from canary.cli.main import build_parser, config_from_args
from canary.cli.router_process import RouterProcess
from canary.dataplane.downstream import DownstreamConn
from canary.dataplane.upstream_pool import Pool, UpstreamConn
from canary.native import compiled

ROOT = Path(__file__).resolve().parents[2]
BARE_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"     # what wrk sends: a new browser each time
BARE_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!"
BROWSER_REQUEST = (
    b"GET /api/session HTTP/1.1\r\nHost: login.example.test\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 "
    b"Safari/537.36\r\nAccept: application/json, text/plain, */*\r\nAccept-Language: en-US,en;q=0.9\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nReferer: https://login.example.test/\r\nSec-Fetch-Dest: empty\r\n"
    b"Sec-Fetch-Mode: cors\r\nSec-Fetch-Site: same-origin\r\nConnection: keep-alive\r\n"
    b"Cookie: csrftoken=abcdefghijklmnopqrstuvwxyz012345; canary_pin=%s; sessionid=0123456789abcdefghijklmnopqrstuv"
    b"\r\n\r\n")
BROWSER_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Sun, 22 Nov 2026 23:00:00 GMT\r\nConnection: keep-alive\r\n"
    b"Content-Type: application/json\r\nContent-Length: 52\r\nVary: Cookie\r\nX-Frame-Options: DENY\r\n"
    b"X-Content-Type-Options: nosniff\r\nReferrer-Policy: same-origin\r\nCross-Origin-Opener-Policy: same-origin\r\n"
    b"X-Served-By: blue/blue-1\r\nX-Release: dev\r\nX-Request-ID: 0123456789abcdef0123456789abcdef\r\n\r\n"
    b'{"authenticated": true, "username": "alice@example"}')


class Sink:
    """A transport that keeps nothing: the router's writes cost only the call."""

    def write(self, data: bytes) -> None: ...

    def writelines(self, data: Any) -> None: ...

    def get_extra_info(self, key: str) -> Any:
        return ("127.0.0.1", 40000) if key == "peername" else None

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool:
        return False


def front_with_nodes(state_dir: Path, *serve_args: str, client: Any = None, node: Any = None,
                     mirroring: bool = False) -> DownstreamConn:
    """A client connection of a real router process (quick mode, two clusters, `serve_args` added) whose nodes each have
    one pooled connection; `client` and `node` are the transports (default: a Sink each). `mirroring`: every safe
    request copied to green (canary/dataplane/mirror.py); neither request measured here is one, so this is what
    shadow traffic costs the requests it does not copy."""
    args = build_parser().parse_args(["serve", "--cluster", "blue=127.0.0.1:9", "--cluster", "green=127.0.0.1:9",
                                      "--no-access-log", "--state", str(state_dir / "state.json"), *serve_args])
    app = RouterProcess(config_from_args(args), "t" * 32, "p" * 32)
    app.loop = app.ctx.loop = asyncio.new_event_loop()
    for n in app.nodes:
        n.pool = Pool(n, app.loop, 1.0)
        conn = UpstreamConn(n.pool)
        conn.connection_made(node or Sink())
        n.pool.release(conn, 0.0)
    app.routing.refresh(time.monotonic())
    if mirroring:
        app.ctx.mirror.apply({"mirror": {"cluster": "green", "percent": 100}}, app.routing.clusters)
    front = DownstreamConn(app.ctx)
    front.connection_made(client or Sink())
    return front


def seconds_per_request(kind: str, requests: int, warmup: int, mirroring: bool = False) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        front = front_with_nodes(Path(tmp), mirroring=mirroring)
        if kind == "browser":
            pin = front.ctx.pin.make_value(1234, int(time.time()))
            request, response = BROWSER_REQUEST % pin, BROWSER_RESPONSE
        else:
            request, response = BARE_REQUEST, BARE_RESPONSE

        def one() -> None:
            front.data_received(request)
            front.answering.up.data_received(response)     # type: ignore[union-attr]

        for _ in range(warmup):
            one()
        t = time.perf_counter()
        for _ in range(requests):
            one()
        return (time.perf_counter() - t) / requests


def _child_env(pure: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop(compiled.PURE_ENV, None)
    return dict(env, **{compiled.PURE_ENV: "1"}) if pure else env


def _this(kind: str, requests: int, mirroring: bool, *more: str) -> list[str]:
    """The command line that runs this module as a child process (one measurement)."""
    return [sys.executable, "-m", "loadtests.bench.hot_path", "--request", kind, "--requests", str(requests),
            *(["--mirroring"] if mirroring else []), *more]


def instructions_per_request(kind: str, pure: bool = False, mirroring: bool = False) -> int | None:
    """Instructions per request counted by callgrind (None without valgrind): two runs, the difference.
    `pure`: on the plain-Python modules (CANARY_PURE_PYTHON=1) instead of the compiled ones."""
    if shutil.which("valgrind") is None:
        return None
    counts = [callgrind_total(_this(kind, n, mirroring, "--warmup", "200"), _child_env(pure), ROOT)
              for n in (500, 4500)]
    return (counts[1] - counts[0]) // 4000


def callgrind_total(command: list[str], env: dict[str, str], cwd: Path) -> int:
    """The instructions `command` executes from start to exit, counted by callgrind."""
    r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
                       capture_output=True, text=True, timeout=900, env=env, cwd=cwd)
    found = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run of {' '.join(command[:4])} failed: {r.stderr[-800:]}")
    return int(found.group(1))


def micros_per_request(kind: str, pure: bool, requests: int = 50_000, mirroring: bool = False) -> float:
    """Best of 3 fresh processes (each warmed up), on the compiled or the plain-Python modules."""
    best = float("inf")
    for _ in range(3):
        r = subprocess.run(_this(kind, requests, mirroring), capture_output=True, text=True, timeout=600,
                           env=_child_env(pure), cwd=ROOT)
        found = re.search(r"([\d.]+) us per request", r.stdout)
        if r.returncode != 0 or found is None:
            raise RuntimeError(f"hot path run failed: {r.stderr[-500:]}")
        best = min(best, float(found.group(1)))
    return best


def run(out_dir: Path) -> dict[str, Any]:
    """`make bench`: both requests on the compiled and the plain-Python modules, microseconds (best of 3 runs of
    50,000) and instructions per request when valgrind is there."""
    load = os.getloadavg()[0]
    reason = compiled.why_pure({})
    variants = {"pure": True} if reason is not None else {"compiled": False, "pure": True}
    figures: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for variant, pure in variants.items():
        figures[variant] = {kind: {"us": micros_per_request(kind, pure), "instructions": instructions_per_request(
            kind, pure)} for kind in ("bare", "browser")}
    # shadow traffic on (every safe request copied): what the requests it does not copy pay (goal: within 2 %)
    first = next(iter(variants))
    figures[f"{first}, mirroring"] = {kind: {"us": micros_per_request(kind, variants[first], mirroring=True),
                                             "instructions": instructions_per_request(kind, variants[first], True)}
                                      for kind in ("bare", "browser")}
    out = {"method": "router Python in-process, no sockets; best of 3 processes of 50,000 requests; instructions: "
                     "callgrind, (4,500 requests - 500 requests) / 4,000",
           "compiled": "yes (mypyc)" if reason is None else f"no: {reason}", "per_request": figures,
           "load_average_at_start": load}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "hot_path.json").write_text(json.dumps(out, indent=2))
    print(f"\nRouter hot path in-process (no sockets), best of 3; load average {load:.2f} at the start:")
    if reason is not None:
        print(f"  (not compiled: {reason})")
    for variant, kinds in figures.items():
        for kind, f in kinds.items():
            count = f["instructions"]
            print(f"  {variant:<19} {kind:<8} request: {f['us']:>6.2f} us   "
                  + (f"{count:>9,} instructions" if count is not None else "(instructions: valgrind not installed)"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench.hot_path", description=__doc__.split("\n")[0])
    p.add_argument("--request", choices=("bare", "browser"), default="browser")
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--warmup", type=int, default=2_000)
    p.add_argument("--instructions", action="store_true", help="count instructions per request with callgrind")
    p.add_argument("--mirroring", action="store_true", help="with shadow traffic on (the request is not copied)")
    a = p.parse_args(argv)
    if a.requests < 1 or a.warmup < 0:
        p.error("--requests must be >= 1 and --warmup >= 0")
    if a.instructions:
        count = instructions_per_request(a.request, pure=compiled.REASON is not None, mirroring=a.mirroring)
        if count is None:
            p.error("--instructions needs valgrind (apt install valgrind)")
        print(f"{a.request} request: {count:,} instructions per request (callgrind)")
        return 0
    per = seconds_per_request(a.request, a.requests, a.warmup, a.mirroring)
    print(f"{a.request} request: {per * 1e6:.2f} us per request (router Python only, {a.requests} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
