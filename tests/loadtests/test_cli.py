"""`python -m loadtests run` refuses bad arguments before anything runs: exit 2 and one line naming the argument."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.plugin import free_port
from tests.support import ROOT


def without_database() -> dict[str, str]:
    """This environment without DATABASE_URL (CI may set one; a local run refuses it)."""
    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loadtests", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=without_database())


@pytest.mark.parametrize("args, named", [
    (["run"], "--scenario"),
    (["run", "--scenario", "soak"], "--scenario"),
    (["run", "--scenario", "steady", "--users", "0"], "--users"),
    (["run", "--scenario", "steady", "--duration", "ten"], "--duration"),
    (["run", "--scenario", "steady", "--rate", "-5"], "--rate"),
    (["run", "--scenario", "steady", "--processes", "1.5"], "--processes"),
    (["run", "--scenario", "steady", "--slo", "p99<<3"], "--slo"),
    (["run", "--scenario", "steady", "--slo", "errors<5ms"], "--slo"),
    (["run", "--scenario", "steady", "--host", "ftp://127.0.0.1:21"], "--host"),
    (["run", "--scenario", "steady", "--kill", "green"], "--kill"),
    (["run", "--scenario", "steady", "--users", "999999"], "--users"),
    (["fly"], "fly"),
])
def test_bad_arguments_exit_2_with_one_line_naming_them(args: list[str], named: str) -> None:
    result = run(*args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not result.stdout


def test_nothing_listening_at_the_host_is_refused_before_any_run(tmp_path: Path) -> None:
    result = run("run", "--scenario", "steady", "--host", f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "--host: nothing usable" in result.stderr, result
    assert not (tmp_path / "r").exists()


def test_a_report_folder_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("{}")
    result = run("run", "--scenario", "steady", "--out", str(tmp_path))
    assert result.returncode == 2 and "--out" in result.stderr, result
    assert (tmp_path / "summary.json").read_text() == "{}"


# --- where a run may go: only this machine's stack is prepared (accounts, product) -------------------------------
NO_NETWORK = """
import sys
from loadtests.cli import main
seen = []
sys.addaudithook(lambda event, args: seen.append(event) if event.startswith("socket.") else None)
try:
    main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as log:
        log.write("\\n".join(seen))
"""


@pytest.mark.parametrize("args, named", [
    (["--host", "http://203.0.113.7:8000"], "--host: http://203.0.113.7:8000 is not this machine"),
    (["--host", "https://login.example.com"], "--host: https://login.example.com is not this machine"),
    (["--host", "http://127.0.0.1.example.test:8000"], "--host: http://127.0.0.1.example.test:8000 is not this"),
    (["--admin", "http://203.0.113.7:8001"], "--admin: http://203.0.113.7:8001 is not this machine"),
])
def test_a_target_off_this_machine_is_refused_before_any_connection(tmp_path: Path, args: list[str],
                                                                    named: str) -> None:
    """Exit 2 with one line, and not one socket opened or name looked up (Python's audit events say so)."""
    events = tmp_path / "socket-events"
    result = subprocess.run([sys.executable, "-c", NO_NETWORK, str(events), "run", "--scenario", "steady", *args,
                             "--out", str(tmp_path / "r")], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env=without_database())
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "--remote with --accounts FILE" in lines[0], result.stderr
    assert events.read_text() == "", events.read_text()
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("host", ["http://localhost", "http://[::1]", "http://127.0.0.2"])
def test_a_loopback_host_passes_the_check(host: str) -> None:
    result = run("run", "--scenario", "steady", "--host", f"{host}:{free_port()}")
    assert result.returncode == 2 and "--host: nothing usable" in result.stderr, result


def accounts(tmp_path: Path, text: str = "ann@example.test:a password of some length\n") -> Path:
    path = tmp_path / "accounts.txt"
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture
def refused(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], str]:
    """The CLI in this process (validation makes no request): its exit status must be 2, its one stderr line."""
    from loadtests import cli

    monkeypatch.delenv("DATABASE_URL", raising=False)

    def refusal(args: list[str]) -> str:
        with pytest.raises(SystemExit) as exited:
            cli.main(args)
        out, err = capsys.readouterr()
        assert exited.value.code == 2 and not out and len(err.strip().splitlines()) == 1, (exited.value, out, err)
        return err.strip().removeprefix("python -m loadtests run: ")
    return refusal


def test_remote_refuses_what_it_cannot_do_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               refused: Callable[[list[str]], str]) -> None:
    file = str(accounts(tmp_path))
    remote = ["run", "--scenario", "steady", "--remote", "--host", "https://staging.example.test"]
    monkeypatch.setenv("LOADTEST_CLIENT_SECRET", "s" * 40)
    monkeypatch.delenv("CANARY_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("CANARY_ADMIN_TOKEN_FILE", raising=False)
    for args, named in [
        (remote, "--accounts: with --remote give a FILE of existing accounts"),
        (remote + ["--accounts", "20"], "--accounts: with --remote give a FILE"),
        (remote + ["--accounts", file, "--scenario", "failover"], "--remote: the failover scenario kills"),
        (remote + ["--accounts", file, "--client-id", "no spaces"], "--client-id: 1 to 100 of"),
        (remote + ["--accounts", file, "--admin", "https://staging.example.test:8001"], "--admin: with --remote the"),
        (remote + ["--accounts", str(accounts(tmp_path, "ann@example.test:ok\nbob@example.test\n"))],
         f"--accounts: {tmp_path}/accounts.txt: line 2: expected email:password"),
        (["run", "--scenario", "steady", "--client-id", "staging-lt"], "--client-id: only with --remote"),
    ]:
        assert refused(args).startswith(named), args
    monkeypatch.delenv("LOADTEST_CLIENT_SECRET")
    assert refused(remote + ["--accounts", file]).startswith("--remote: LOADTEST_CLIENT_SECRET is not set")


def test_a_database_url_in_the_shell_is_never_prepared(monkeypatch: pytest.MonkeyPatch,
                                                       refused: Callable[[list[str]], str]) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://prod.example.test/login")
    assert refused(["run", "--scenario", "steady"]).startswith("DATABASE_URL is set: a run prepares only the stack's")
