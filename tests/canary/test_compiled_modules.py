"""The router's hot modules run compiled (mypyc) where they were built, and the plain-Python path stays equal."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from canary import compiled
from tests.support import wait_for

from .conftest import toml_config

ROOT = Path(__file__).resolve().parents[2]
# The files that drive the request path hardest: framing, smuggling, limits, pins, heads, bodies.
REQUEST_PATH_TESTS = ["tests/canary/test_basic_proxy.py", "tests/canary/test_client_abuse.py",
                      "tests/canary/test_front_head.py", "tests/canary/test_response_head.py",
                      "tests/canary/test_pin_cookie.py", "tests/canary/test_upstream_framing.py"]


def loaded(env: dict[str, str]) -> dict[str, object]:
    """What a fresh interpreter with `env` imports for the request path."""
    code = ("import json, canary.proxy, canary.server, canary.compiled as c; "
            "print(json.dumps({'status': c.status(), 'compiled': c.loaded_compiled(), "
            "'proxy': canary.proxy.__file__}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_installed_router_runs_the_compiled_modules() -> None:
    """`make install` compiled them and nothing changed since: a router started now uses them (in CI always)."""
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    reason = compiled.why_pure(env)
    if reason is not None and not os.environ.get("CI"):
        pytest.skip(f"the hot modules are not compiled here ({reason}); `make install` compiles them")
    got = loaded(env)
    assert got["compiled"] is True and got["status"] == "compiled (mypyc)", got
    assert not str(got["proxy"]).endswith(".py")


def test_canary_pure_python_loads_the_source_beside_the_build() -> None:
    got = loaded(dict(os.environ, **{compiled.PURE_ENV: "1"}))
    assert got["compiled"] is False and str(got["proxy"]).endswith("canary/proxy.py"), got
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


def test_the_request_path_tests_pass_on_the_plain_python_modules(tmp_path: Path) -> None:
    """The same assertions, with every router (and the in-process parser tests) on the .py modules."""
    env = dict(os.environ, **{compiled.PURE_ENV: "1"})
    env.pop("PYTEST_XDIST_WORKER", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--basetemp", str(tmp_path / "t"), *REQUEST_PATH_TESTS],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout.splitlines()[-1] and "failed" not in r.stdout.splitlines()[-1]


def test_a_router_logs_which_modules_it_runs(backends, router_factory) -> None:
    r = router_factory(config=toml_config({"blue": backends("blue", 1), "green": backends("green", 1)}))
    reason = compiled.why_pure(os.environ)
    expected = "request path: compiled (mypyc)" if reason is None else f"request path: pure Python: {reason}"
    wait_for(lambda: expected in r.stdout.read_text(), 5, "the router's start-up line naming its modules")
