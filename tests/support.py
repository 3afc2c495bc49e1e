"""Helpers to run real login-service nodes (gunicorn processes) and talk to them like a browser."""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest
import requests

from deploy.node import ROOT, Node, manage, wait_for  # noqa: F401 - re-exported: the one polling helper of the tests
from tests import plugin
from tests.plugin import lasting_port


def require(present: bool, reason: str) -> None:
    """A test that needs a system tool skips without it, with the reason, except under CI=true (.ci/run installs
    the tools), where the same absence fails the test."""
    if present:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def read_all(s: socket.socket, until: bytes | None = None, timeout: float = 5.0) -> bytes:
    """What the peer sends on `s` until it closes (or resets), `until` appears, or `timeout` seconds pass."""
    s.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
        if until is not None and until in out:
            break
    return out


def raw_exchange(port: int, data: bytes, timeout: float = 3.0, half_close: bool = False,
                 until: bytes | None = None) -> bytes:
    """The one raw-HTTP client of the tests: `data` as given (malformed on purpose, pipelined, ...) on a new
    connection to 127.0.0.1:`port`, then everything answered (read_all); `half_close` ends the sending side."""
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (ConnectionResetError, BrokenPipeError):
            return b""
        return read_all(s, until, timeout)


def fresh_database(env: dict[str, str]) -> None:
    """A migrated, empty database for the nodes started with `env`. A server database (DATABASE_URL: shared by
    every test) is migrated, then flushed; a new scratch SQLite one is a copy (SQLite's backup API) of one
    migrated once per test process, since migrating from nothing takes seconds and copying milliseconds."""
    target = Path(env["LOGINSVC_VAR_DIR"]) / "db.sqlite3"
    if env.get("DATABASE_URL") or target.exists():
        manage(env, "migrate", "--noinput", "-v", "0")
        if env.get("DATABASE_URL"):
            manage(env, "flush", "--noinput", "-v", "0")
        return
    template = plugin.SCRATCH / "migrated" / "db.sqlite3"
    if not template.exists():
        template.parent.mkdir(mode=0o700, exist_ok=True)
        manage(dict(env, LOGINSVC_VAR_DIR=str(template.parent)), "migrate", "--noinput", "-v", "0")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    target.chmod(0o600)


def node_env(var_dir: Path, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment of a node process: its own scratch var/ (SQLite) unless DATABASE_URL is set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        LOGINSVC_VAR_DIR=str(var_dir),
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="loginsvc.settings",
        LOGINSVC_JSON_LOGS="1",
    )
    env.update(extra)
    return env


class LoginNode(Node):
    """A node for one test: a free port, one worker unless asked, its log and metrics in the test's folder."""

    def __init__(self, env: dict[str, str], cluster: str, name: str, log_dir: Path) -> None:
        env = dict(
            env,
            WEB_CONCURRENCY=env.get("WEB_CONCURRENCY", "1"),
            PROMETHEUS_MULTIPROC_DIR=str(log_dir / f"metrics-{name}"),
        )
        super().__init__(env, cluster, name, log_path=log_dir / f"{name}.log")

    def log(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")


class Browser(requests.Session):
    """A client with a cookie jar that logs in like our products' front ends do."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def call(self, method: str, path: str, base_url: str | None = None, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("allow_redirects", False)
        return self.request(method, (base_url or self.base_url) + path, **kwargs)

    def csrf_token(self) -> str:
        if "csrftoken" not in self.cookies:
            self.call("GET", "/api/session")
        return self.cookies["csrftoken"]

    def login(self, email: str, password: str, base_url: str | None = None) -> requests.Response:
        return self.call(
            "POST", "/api/login", base_url, json={"username": email, "password": password},
            headers={"X-CSRFToken": self.csrf_token()},
        )

    def whoami(self, base_url: str | None = None) -> dict[str, object]:
        response = self.call("GET", "/api/session", base_url)
        response.raise_for_status()
        return response.json()


class LocalReceiver:
    """A local HTTP peer (a product's back-channel logout endpoint, an alert webhook) on a fixed port, so it
    can stop and start again there: every POST goes to `answer`, which returns (status, extra headers)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: ThreadingHTTPServer | None = None

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str]]:
        raise NotImplementedError

    def start(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                status, extra = receiver.answer(self.path, self.headers,
                                                self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(status)
                for name, value in {"Content-Length": "0", **extra}.items():
                    self.send_header(name, value)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class Webhook(LocalReceiver):
    """An alert webhook on a fixed port: answers `refuse_first` requests 429 (Retry-After: 1), then 200."""

    def __init__(self, refuse_first: int = 0) -> None:
        super().__init__(lasting_port())
        self.refuse_first = refuse_first
        self.bodies: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.statuses: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str]]:
        refuse = len(self.statuses) < self.refuse_first
        self.statuses.append(429 if refuse else 200)
        self.times.append(time.monotonic())
        if refuse:
            return 429, {"Retry-After": "1"}
        self.bodies.append(json.loads(body))
        return 200, {}

    def texts(self) -> list[str]:
        return [b["text"] for b in self.bodies]


class Mailbox:
    """aiosmtpd's handler: every message's text."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope.content.decode("utf-8", "replace"))
        return "250 OK"
