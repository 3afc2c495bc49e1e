"""`canary`'s one shared option, --admin, is accepted where people put it: before the verb or after it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from canary.cli.main import DEFAULT_ADMIN, build_parser, config_from_args

ROOT = Path(__file__).resolve().parents[2]
SERVE = ["--cluster", "blue=127.0.0.1:1", "--cluster", "green=127.0.0.1:2"]


@pytest.mark.parametrize("argv", [["--admin", "http://127.0.0.1:9"], []])
@pytest.mark.parametrize("verb", [["status"], ["ramp", "20"], ["drain", "blue"], ["plan", "history"], ["alerts"],
                                  ["sign-out-all"], ["nodes", "blue"], ["promote"]])
def test_the_admin_url_before_or_after_the_verb(verb: list[str], argv: list[str]) -> None:
    expected = argv[1] if argv else DEFAULT_ADMIN
    assert build_parser().parse_args([*argv, *verb]).admin == expected
    assert build_parser().parse_args([*verb, *argv]).admin == expected


def test_after_the_verb_wins_over_before() -> None:
    assert build_parser().parse_args(["--admin", "http://a:1", "status", "--admin", "http://b:2"]).admin == "http://b:2"


@pytest.mark.parametrize("order", ["before", "after"])
def test_serve_listens_for_the_admin_api_where_either_order_says(order: str) -> None:
    argv = ["--admin", "127.0.0.1:9911", "serve", *SERVE] if order == "before" else ["serve", *SERVE, "--admin",
                                                                                      "127.0.0.1:9911"]
    assert config_from_args(build_parser().parse_args(argv)).admin == ("127.0.0.1", 9911)
    assert config_from_args(build_parser().parse_args(["serve", *SERVE])).admin == ("127.0.0.1", 8001)


def test_a_bad_admin_before_the_verb_is_one_clear_line() -> None:
    result = subprocess.run([sys.executable, "-m", "canary", "--admin", "ftp://nowhere", "status"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "canary: error: --admin: expected an http:// URL, got 'ftp://nowhere'"]
