"""`make up`'s runner (python -m deploy.local): embedded Redis, migrations, demo users, clean Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from deploy.local import parse_args
from loginsvc import conf
from tests.plugin import free_port
from tests.support import ROOT, Browser


def test_runner_serves_with_embedded_defaults_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LOGINSVC_VAR_DIR", "DATABASE_URL")}
    env["DEMO_PASSWORD"] = "demo password for the test"
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.local", "--port", str(port), "--var-dir", str(tmp_path / "var")],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Ctrl-C stops everything" in line or not line:
                break
        assert f"http://127.0.0.1:{port}/login/" in "".join(lines), "".join(lines)
        base = f"http://127.0.0.1:{port}"
        assert requests.get(base + "/readyz", timeout=5).json()["checks"] == {"database": "ok", "redis": "ok"}
        assert (tmp_path / "var" / "db.sqlite3").exists() and (tmp_path / "var" / "redis.sock").exists()
        browser = Browser(base)
        assert browser.login("demo@example.test", "demo password for the test").status_code == 200
        assert browser.login("demo2@example.test", "demo password for the test").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(40) == 0
    # Nothing left running: the port and the Redis socket are gone.
    try:
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        raise AssertionError("login service still answering after Ctrl-C")
    except requests.ConnectionError:
        pass
    assert not (tmp_path / "var" / "redis.sock").exists()


def test_manage_py_and_make_up_default_to_the_same_state_folder(monkeypatch, settings) -> None:
    """Both take var/ in the checkout when LOGINSVC_VAR_DIR is unset (checked without creating it)."""
    assert conf.var_dir({}) == ROOT / "var"
    assert settings.VAR_DIR == conf.var_dir()  # settings put SQLite at VAR_DIR / "db.sqlite3"
    monkeypatch.delenv("LOGINSVC_VAR_DIR")
    assert parse_args([]).var_dir == ROOT / "var"


def test_runner_rejects_a_bad_port_with_one_message() -> None:
    result = subprocess.run([sys.executable, "-m", "deploy.local", "--port", "70000"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--port: must be between 1 and 65535" in result.stderr
