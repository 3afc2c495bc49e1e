"""One login-service node: a gunicorn process group with its cluster/node identity, started and stopped."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now and never handed out before by this process: its probe socket closes at once, so
    the kernel may pick the same port for the next probe (about 6 pairs in 100,000), and two ports asked for in a
    row (a listener's and its admin port, bound later) would then clash."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05,
             ignore: tuple[type[BaseException], ...] = (OSError,)) -> None:
    """Poll `predicate` until it is true. An exception in `ignore` means "not yet"; any other one
    propagates at once (a process that died); after `timeout` seconds, TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except ignore:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def still_running(process: subprocess.Popen[bytes] | None, what: str) -> None:
    """For wait_for predicates: waiting on a process that has exited is pointless, say so at once."""
    if process is not None and process.poll() is not None:
        raise RuntimeError(f"{what} exited with {process.returncode}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port now."""
    try:
        with socket.create_connection((host, port), 0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on host:port."""
    wait_for(lambda: port_open(port, host), timeout, f"port {port}")


def manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `manage.py ARGS` with `env`, capturing its output."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT,
        capture_output=True, text=True, check=check, timeout=120,
    )


class Node:
    """A gunicorn node on HOST:PORT; its own process group, so stopping it stops all its workers."""

    def __init__(self, env: dict[str, str], cluster: str, name: str, port: int = 0,
                 host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.host, self.port = host, port or free_port()
        self.cluster, self.name = cluster, name
        self.url = f"http://{host}:{self.port}"
        self.env = dict(env, LOGINSVC_CLUSTER=cluster, LOGINSVC_NODE=name, LOGINSVC_BIND=f"{host}:{self.port}")
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "Node":
        log = open(self.log_path, "ab") if self.log_path else None
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF)],
                env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True,
            )
        finally:
            if log:
                log.close()
        self.wait_alive(timeout)
        return self

    def wait_alive(self, timeout: float) -> None:
        def alive() -> bool:
            still_running(self.process, f"node {self.name}")
            return http_ok(self.url + "/healthz")
        wait_for(alive, timeout, f"node {self.name}: /healthz", interval=0.1)

    def running(self) -> bool:
        return bool(self.process and self.process.poll() is None)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: gunicorn finishes in-flight requests (graceful_timeout), then exits."""
        self.begin_stop()
        self.wait_stopped(timeout)

    def begin_stop(self) -> None:
        """SIGTERM without waiting (the drain, then the graceful stop), so that several nodes stop together."""
        if self.running():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGTERM)

    def wait_stopped(self, timeout: float = 30.0) -> None:
        """Wait for a node told to stop; SIGKILL after `timeout` seconds."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to the whole process group, as a crash would."""
        if self.running():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
