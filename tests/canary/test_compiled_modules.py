"""The router's data plane runs compiled (mypyc) where they were built, and the plain-Python path stays equal."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from canary.native import compiled
from tests.support import wait_for

from .conftest import toml_config

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Every test file of the request path (heads, bodies, framing, smuggling, limits, pins, routing, retries, the node
# pool, the hot modules' own units) runs again on the plain-Python modules (test below): about 70 s more on one CI
# worker. Where a whole file would cost too much, its fast part runs here, and the comment says so.
REQUEST_PATH_TESTS = [
    "test_access_log.py", "test_analysis.py", "test_basic_proxy.py", "test_client_abuse.py", "test_drain_overload.py",
    "test_failover.py", "test_front_head.py", "test_front_refusals.py", "test_fuzz_front.py", "test_mirror.py",
    "test_outlier_health.py", "test_pin_cookie.py", "test_response_head.py", "test_retry_budget_and_limits.py",
    "test_router_hardening.py", "test_share_and_slow_start.py", "test_share_ramp.py", "test_slow_bodies.py",
    "test_tester_links.py", "test_upstream_framing.py", "test_upstream_pool.py",
    # the node churn under load; the rest of the file is the admin API, the state store and the CLI
    "test_nodes_membership.py::test_add_then_remove_a_node_under_load",
]
# Left out of that run: real gunicorn login nodes (about 15 s); the same body buffering runs on demo nodes in the
# rest of its file.
NOT_TWICE = ["test_slow_bodies.py::test_slow_login_bodies_hold_no_node_thread_and_another_client_is_served"]
# Files (or name patterns) that start a router or use a hot module but run on the compiled modules only, and why.
COMPILED_ONLY = {
    "test_admin_http.py": "the admin listener (canary/admin/) is not in the data plane",
    "test_alerts*.py": "alert delivery, off the request path",
    "test_cli.py": "the ops CLI against the admin API",
    "test_compiled_modules.py": "this file: it starts the plain-Python run",
    "test_dashboard.py": "the ops dashboard on the admin listener",
    "test_dns_discovery.py": "how node addresses are found, not how requests travel",
    "test_login_cluster.py": "real gunicorn login nodes (~30 s); the router path it drives (pins, forwarded "
                             "headers, failover, panic) runs on both in the files above",
    "test_monitoring.py": "promtool and metric names",
    "test_plan.py": "ramp plans (the automation), under traffic the files above cover",
    "test_proactive_shift.py": "real gunicorn login nodes slowed on purpose; the automation, not the path",
    "test_state.py": "the state store across restarts and Redis",
}


def loaded(env: dict[str, str]) -> dict[str, object]:
    """What a fresh interpreter with `env` imports for the request path."""
    code = ("import json, canary.dataplane.downstream, canary.cli.router_process, canary.native.compiled as c; "
            "print(json.dumps({'status': c.status(), 'compiled': c.loaded_compiled(), "
            "'proxy': canary.dataplane.downstream.__file__}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_installed_router_runs_the_compiled_modules() -> None:
    """`make install` compiled them and nothing changed since: a router started now uses them (in CI always)."""
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    reason = compiled.why_pure(env)
    if reason is not None and not os.environ.get("CI"):
        pytest.skip(f"the data plane is not compiled here ({reason}); `make install` compiles it")
    got = loaded(env)
    assert got["compiled"] is True and got["status"] == "compiled (mypyc)", got
    assert not str(got["proxy"]).endswith(".py")


def test_canary_pure_python_loads_the_source_beside_the_build() -> None:
    got = loaded(dict(os.environ, **{compiled.PURE_ENV: "1"}))
    assert got["compiled"] is False and str(got["proxy"]).endswith("canary/dataplane/downstream.py"), got
    assert compiled.PURE_ENV in str(got["status"])


def test_a_source_changed_since_the_build_makes_it_stale(tmp_path: Path) -> None:
    """A stale extension would run other code than the source beside it: the manifest's digests say so."""
    digests = compiled.source_digests()
    manifest = tmp_path / "native-build.json"
    manifest.write_text(json.dumps({"python": sys.version, "sources": dict(digests, exchange="0" * 64)}))
    assert compiled.why_pure({}, manifest) == "stale build: changed since it was compiled: exchange"
    manifest.write_text(json.dumps({"python": "3.10.0", "sources": digests}))
    assert compiled.why_pure({}, manifest) == "stale build: changed since it was compiled: the Python version"
    manifest.write_text("{not json")
    assert compiled.why_pure({}, manifest) == "no readable native-build.json"
    assert compiled.why_pure({}, tmp_path / "absent.json").startswith("not compiled")
    manifest.write_text(json.dumps({"python": sys.version, "sources": digests}))
    built = all(p.exists() for p in compiled.artifacts())
    assert (compiled.why_pure({}, manifest) is None) is built


def exercises_the_request_path(path: Path) -> bool:
    """A test file that starts a router, feeds a router's front in-process, or imports a hot module."""
    text = path.read_text()
    hot = "|".join(compiled.HOT_MODULES)
    return ("router_factory" in text or "make_front" in text
            or re.search(rf"^\s*(from|import) canary\.dataplane\.({hot})\b", text, re.M) is not None)


def test_every_request_path_test_file_runs_on_both_or_says_why_not() -> None:
    """A new test file that exercises the router must be listed: in REQUEST_PATH_TESTS, or with its reason."""
    listed = {t.split("::")[0] for t in REQUEST_PATH_TESTS}
    assert all((HERE / name).exists() for name in listed) and all(list(HERE.glob(p)) for p in COMPILED_ONLY)
    assert all(t.split("::")[0] in listed for t in NOT_TWICE)
    excused = {p.name for pattern in COMPILED_ONLY for p in HERE.glob(pattern)}
    assert listed.isdisjoint(excused)
    found = {p.name for p in HERE.glob("test_*.py") if exercises_the_request_path(p)}
    assert found - listed - excused == set(), "list these in REQUEST_PATH_TESTS or COMPILED_ONLY"


@pytest.mark.timeout(600)
def test_the_request_path_tests_pass_on_the_plain_python_modules(tmp_path: Path) -> None:
    """The same assertions, with every router (and the in-process parser tests) on the .py modules."""
    env = dict(os.environ, **{compiled.PURE_ENV: "1"})
    env.pop("PYTEST_XDIST_WORKER", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--basetemp", str(tmp_path / "t"), *(f"tests/canary/{t}" for t in REQUEST_PATH_TESTS),
                        *(f"--deselect=tests/canary/{t}" for t in NOT_TWICE)],
                       capture_output=True, text=True, timeout=540, cwd=ROOT, env=env)
    failed = [ln for ln in r.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    assert r.returncode == 0, "\n".join(failed) + "\n" + r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout.splitlines()[-1] and "failed" not in r.stdout.splitlines()[-1]


def test_a_router_logs_which_modules_it_runs(backends, router_factory) -> None:
    r = router_factory(config=toml_config({"blue": backends("blue", 1), "green": backends("green", 1)}))
    reason = compiled.why_pure(os.environ)
    expected = "request path: compiled (mypyc)" if reason is None else f"request path: pure Python: {reason}"
    wait_for(lambda: expected in r.stdout.read_text(), 5, "the router's start-up line naming its modules")
