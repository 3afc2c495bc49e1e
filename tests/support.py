"""Helpers to run real login-service nodes (gunicorn processes) and talk to them like a browser."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.plugin import free_port

ROOT = Path(__file__).resolve().parent.parent


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


def manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT,
        capture_output=True, text=True, check=check, timeout=120,
    )


class LoginNode:
    """One gunicorn node of the login service on a free loopback port."""

    def __init__(self, env: dict[str, str], cluster: str, name: str, log_dir: Path) -> None:
        self.port = free_port()
        self.cluster, self.name = cluster, name
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(
            env,
            LOGINSVC_CLUSTER=cluster,
            LOGINSVC_NODE=name,
            LOGINSVC_BIND=f"127.0.0.1:{self.port}",
            WEB_CONCURRENCY=env.get("WEB_CONCURRENCY", "1"),
            PROMETHEUS_MULTIPROC_DIR=str(log_dir / f"metrics-{name}"),
        )
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "LoginNode":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
                env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"node {self.name} not up within {timeout}s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


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
