"""`python -m loadtests run` refuses bad arguments before anything runs: exit 2 and one line naming the argument."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugin import free_port
from tests.support import ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loadtests", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


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
