"""The real local stack (python -m deploy.local) on free ports, and clients that count failures."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from deploy.operations import Stack
from deploy.stack import StackSpec
from tests.plugin import free_port, lasting_port
from tests.support import ROOT, Browser, wait_for

PASSWORD = "demo password for the stack tests"
# Start-up must finish; how fast is `make up`'s own report. Generous: other tests share the two cores.
STARTUP_BOUND_SECONDS = 60


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    var_dir: Path
    base: str
    admin: str
    output: Path
    env: dict[str, str]
    startup_seconds: float = 0.0

    def deploy(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "deploy", "--var-dir", str(self.var_dir), *args], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def status(self) -> dict[str, dict[str, Any]]:
        """What `python -m deploy status --json` prints, computed in-process (polled often: no subprocess)."""
        return {row["name"]: row for row in Stack(StackSpec.load(self.var_dir)).status()}

    def retries(self) -> float:
        """The router's count of retried attempts: graceful operations should need none."""
        text = requests.get(self.admin + "/metrics", timeout=5).text
        return float(re.search(r"^canary_retries_total (\S+)$", text, re.M).group(1))

    def router(self, method: str = "GET", path: str = "/api/status", body: dict | None = None) -> dict[str, Any]:
        token = (self.var_dir / "canary-admin-token").read_text().strip()
        response = requests.request(method, self.admin + path, json=body, timeout=5,
                                    headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        wait_for(predicate, timeout, what, interval=0.25, ignore=())

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(60)


def stack_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTEST") and k not in ("REDIS_URL", "DATABASE_URL", "LOGINSVC_VAR_DIR")}
    env.update(DEMO_PASSWORD=PASSWORD, LOGINSVC_VAR_DIR=str(tmp))
    return env


def start_stack(tmp: Path, *extra: str, timeout: float = 90, env_extra: dict[str, str] | None = None) -> RunningStack:
    """`python -m deploy.local` on free ports; `env_extra` goes into every program's environment."""
    listen, admin = free_port(), free_port()
    started = time.monotonic()
    env = {**stack_env(tmp / "var"), **(env_extra or {})}
    output = tmp / "up.out"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy.local", "--var-dir", str(tmp / "var"), "--listen", f"127.0.0.1:{listen}",
             "--admin", f"127.0.0.1:{admin}", "--mail-listen", f"127.0.0.1:{free_port()}",
             "--node-port-base", str(lasting_port(8)), *extra],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    stack = RunningStack(process, tmp / "var", f"http://127.0.0.1:{listen}", f"http://127.0.0.1:{admin}", output, env)
    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError("deploy.local exited")
        return "Ctrl-C stops everything" in output.read_text(errors="replace")
    try:
        wait_for(up, timeout, "the stack coming up", interval=0.1, ignore=())
    except (TimeoutError, RuntimeError):
        stack.stop()
        pytest.fail(f"stack did not come up:\n{output.read_text(errors='replace')}")
    stack.startup_seconds = time.monotonic() - started
    return stack


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(tmp_path_factory.mktemp("stack"))
    yield stack
    stack.stop()


@dataclass
class Poller:
    """A logged-in user polling GET /api/session every `interval` s; counts anything but an authenticated 200."""

    browser: Browser
    interval: float = 0.05
    served: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "Poller":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self.browser.call("GET", "/api/session", timeout=10)
                if response.status_code != 200 or not response.json().get("authenticated"):
                    self.failures.append(f"{response.status_code} {response.text[:120]}")
                self.served.append(response.headers.get("X-Served-By", "?"))
            except (requests.RequestException, ValueError) as exc:
                self.failures.append(repr(exc))
            self._stop.wait(self.interval)

    def count(self, prefix: str) -> int:
        return sum(1 for s in self.served if s.startswith(prefix))


def logged_in_browser(stack: RunningStack, cluster: str | None = None, email: str = "demo@example.test") -> Browser:
    """A new browser (pinned by the router), optionally one whose pin lands on `cluster`, logged in."""
    for _ in range(300):
        browser = Browser(stack.base)
        first = browser.call("GET", "/api/session")
        if cluster is None or first.headers["X-Served-By"].startswith(cluster + "/"):
            break
    else:
        raise AssertionError(f"no new browser was pinned to {cluster} in 300 tries")
    assert browser.login(email, PASSWORD).status_code == 200
    return browser
