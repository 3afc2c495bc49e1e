"""`make up` (python -m deploy.local): the whole stack from nothing, ready fast, gone after Ctrl-C."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyotp
import pytest
import requests

from deploy.local import make_private, parse_args
from loginsvc import conf
from deploy.local import dovecot_problem
from deploy.stack import StackSpec
from tests.stack.conftest import PASSWORD, STARTUP_BOUND_SECONDS, start_stack
from tests.support import ROOT, Browser, wait_for


# Secrets and private state of a running stack: none may be readable by group or others.
PRIVATE = ("db.sqlite3", "redis.sock", "secret_key", "canary-admin-token", "canary-pin-secret", "log/redis.log",
           "log/router.log", "log/blue-1.log", "stack/supervisord.conf")


def open_to_others(var: Path) -> list[str]:
    """Every path under `var` (itself included) with any group/other permission bit, with its mode."""
    return [f"{p.relative_to(var.parent)} {oct(p.lstat().st_mode & 0o777)}" for p in [var, *var.rglob("*")]
            if not p.is_symlink() and p.lstat().st_mode & 0o077]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_brings_everything_up_and_ctrl_c_leaves_nothing_running(tmp_path: Path) -> None:
    started = time.monotonic()
    stack = start_stack(tmp_path, "--nodes", "1")
    try:
        elapsed = time.monotonic() - started
        output = stack.output.read_text()
        # A bound against hangs, not a speed test: the suite runs two workers on two cores, and start-up
        # (~5-15 s alone) is measured by `make up` itself ("stack ready in …s").
        assert elapsed < STARTUP_BOUND_SECONDS, f"stack took {elapsed:.1f}s:\n{output}"
        assert f"{stack.base}/login/" in output and f"{stack.admin}/api/status" in output, output
        rows = stack.status()
        # Dovecot for mail clients when it can run here (installed, and not root with var/ closed to its
        # mail user); either way one line says where mail clients connect or why they cannot.
        dovecot = dovecot_problem(StackSpec.load(stack.var_dir)) is None
        assert set(rows) == {"redis", "mail", "router", "blue-1", "green-1"} | ({"dovecot"} if dovecot else set())
        assert ("mail clients    IMAP 127.0.0.1:1143" if dovecot else "mail clients    no Dovecot: ") in output
        pids = [row["pid"] for row in rows.values()]
        assert all(pids)
        # Embedded defaults: SQLite and the Redis socket under the var dir; demo users from DEMO_PASSWORD.
        assert (stack.var_dir / "db.sqlite3").exists() and (stack.var_dir / "redis.sock").exists()
        # Owner-only (umask 0077, var/ 0700): the database holds password hashes and live session keys.
        assert [name for name in PRIVATE if not (stack.var_dir / name).exists()] == []
        assert stack.var_dir.stat().st_mode & 0o777 == 0o700
        # Dovecot gives its own sockets and mailbox files the modes it needs; var/ (0700) keeps everyone else out.
        dovecots = tuple(f"{stack.var_dir.name}/{name}/" for name in ("dovecot", "imap"))
        assert [p for p in open_to_others(stack.var_dir) if not p.startswith(dovecots)] == []
        # demo2 has an authenticator app: its URI printed at start-up and kept owner-only in var/.
        totp_file = stack.var_dir / "demo2-totp.txt"
        uri = totp_file.read_text().strip()
        assert totp_file.stat().st_mode & 0o777 == 0o600 and uri in output, output
        browser = Browser(stack.base)
        first = browser.login("demo2@example.test", PASSWORD)
        assert first.status_code == 200 and first.json()["mfa_required"] is True, first.text
        second = browser.call("POST", "/api/login/mfa", json={"method": "totp", "code": pyotp.parse_uri(uri).now()},
                              headers={"X-CSRFToken": browser.csrf_token()})
        assert second.status_code == 200, second.text
        assert browser.call("GET", "/api/session").json()["email"] == "demo2@example.test"
        # The admin token was generated into var/ (0600); `python -m canary` finds it there by itself.
        token_file = stack.var_dir / "canary-admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        env = {k: v for k, v in stack.env.items() if not k.startswith("CANARY_")}
        canary = subprocess.run([sys.executable, "-m", "canary", "status", "--admin", stack.admin], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=30)
        assert canary.returncode == 0 and "stable=blue canary=green share=12%" in canary.stdout, canary
        # A second `make up` on the same var dir refuses instead of fighting over the ports.
        again = subprocess.run([sys.executable, "-m", "deploy.local", "--var-dir", str(stack.var_dir)], cwd=ROOT,
                               env=stack.env, capture_output=True, text=True, timeout=30)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        code = stack.stop()
    assert code == 0
    wait_for(lambda: not any(pid_alive(p) for p in pids), 10, "every process gone after Ctrl-C", interval=0.1)
    for url in (stack.base + "/healthz", stack.admin + "/healthz"):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=1)
    assert not (stack.var_dir / "redis.sock").exists()
    assert "stopped" in stack.output.read_text()


def test_up_makes_an_existing_var_dir_private(tmp_path: Path) -> None:
    """A var/ left by an earlier run with the usual 0022 umask: make up takes group/other access away."""
    var = tmp_path / "var"
    (var / "log").mkdir(parents=True, mode=0o755)
    var.chmod(0o755)
    for name, mode in (("db.sqlite3", 0o644), ("log/router.log", 0o664), ("canary-pin-secret", 0o600)):
        (var / name).write_text("x")
        (var / name).chmod(mode)
    (var / "link").symlink_to("/etc/hostname")  # not followed, not changed
    previous = os.umask(0o022)
    try:
        make_private(var)
        new_file = var / "new"
        new_file.touch()
        assert new_file.stat().st_mode & 0o777 == 0o600  # the umask the stack's programs inherit
    finally:
        os.umask(previous)
    assert open_to_others(var) == []
    assert (var / "db.sqlite3").stat().st_mode & 0o777 == 0o600 and var.stat().st_mode & 0o777 == 0o700
    assert Path("/etc/hostname").stat().st_mode & 0o044


def test_settings_create_var_private_under_a_usual_umask(tmp_path: Path) -> None:
    """`manage.py …` outside make up (umask 0022) creates var/ 0700 with the generated secret key in it."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "DATABASE_URL")}
    env.update(LOGINSVC_VAR_DIR=str(tmp_path / "var"), LOGINSVC_MODE="local")
    result = subprocess.run([sys.executable, "-c", "import loginsvc.settings"], cwd=ROOT, env=env, timeout=60,
                            capture_output=True, text=True, preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var").stat().st_mode & 0o777 == 0o700
    assert open_to_others(tmp_path / "var") == [] and (tmp_path / "var" / "secret_key").exists()


def test_a_stack_that_cannot_start_says_why_and_leaves_nothing_running(tmp_path: Path) -> None:
    """A router that refuses its configuration (a short admin token) crash-loops: make up gives up fast."""
    from tests.plugin import lasting_port
    from tests.stack.conftest import stack_env
    from tests.plugin import free_port
    from deploy.stack import port_free
    env = dict(stack_env(tmp_path / "var"), CANARY_ADMIN_TOKEN="short")
    base = lasting_port(8)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "deploy.local", "--var-dir", str(tmp_path / "var"), "--nodes", "1",
         "--listen", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{free_port()}",
         "--mail-listen", f"127.0.0.1:{free_port()}", "--node-port-base", str(base)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result
    assert "router keeps crashing" in result.stderr and "stopped" in result.stderr, result.stderr
    assert time.monotonic() - started < 60
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "var")], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"
    assert port_free(base) and port_free(base + 1), "a node still listens"   # gunicorn's command line names no var dir


def test_manage_py_and_make_up_default_to_the_same_state_folder(monkeypatch, settings) -> None:
    """Both take var/ in the checkout when LOGINSVC_VAR_DIR is unset (checked without creating it)."""
    assert conf.var_dir({}) == ROOT / "var"
    assert settings.VAR_DIR == conf.var_dir()  # settings put SQLite at VAR_DIR / "db.sqlite3"
    monkeypatch.delenv("LOGINSVC_VAR_DIR")
    assert parse_args([]).var_dir == ROOT / "var"


@pytest.mark.parametrize("args, message", [
    (["--listen", "127.0.0.1:70000"], "--listen: expected HOST:PORT with a port 1-65535"),
    (["--admin", "nowhere"], "--admin: expected HOST:PORT"),
    (["--nodes", "0"], "--nodes: must be between 1 and 16"),
    (["--nodes", "many"], "--nodes: expected a number"),
    (["--canary-percent", "120"], "--canary-percent: must be between 0 and 100"),
    (["--listen", "127.0.0.1:9000", "--admin", "127.0.0.1:9000"], "--admin: must differ from --listen"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--var-dir", "/tmp/with space/var"], "--var-dir: may not contain whitespace"),
    (["--var-dir", "/tmp/" + "deep/" * 20 + "var"], "--var-dir: too deep for unix sockets"),
])
def test_up_rejects_bad_options_with_one_message(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "deploy.local", "--var-dir", str(tmp_path), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("where", ["before the verb", "after the verb"])
def test_deploy_verbs_without_a_stack_say_so(tmp_path: Path, where: str) -> None:
    """The global --var-dir is accepted on either side of the verb (where people put it)."""
    args = ["--var-dir", str(tmp_path), "status"] if where == "before the verb" else ["status", "--var-dir", str(tmp_path)]
    result = subprocess.run([sys.executable, "-m", "deploy", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "no stack under" in result.stderr and "make up" in result.stderr
