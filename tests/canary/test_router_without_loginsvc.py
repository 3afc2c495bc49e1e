"""The router runs without the login service: with `loginsvc` unimportable, every canary module imports and a router
serves a request (what both share lives in sharedlib/, standard library only)."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import wait_for

from .conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
# Put first on sys.meta_path: no finder (the editable install's included) ever gets to load loginsvc or Django.
BLOCK = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("loginsvc", "django"):
            raise ModuleNotFoundError(f"{name} is kept out of this process", name=name)
        return None
sys.meta_path.insert(0, Blocked())
"""


def run(code: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CANARY_", "DJANGO_", "LOGINSVC_"))}
    return subprocess.Popen([sys.executable, "-c", BLOCK + code, *args], text=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kwargs)


def test_sharedlib_needs_the_standard_library_only() -> None:
    imported = {alias.name.partition(".")[0] for p in (ROOT / "sharedlib").glob("*.py")
                for node in ast.walk(ast.parse(p.read_text()))
                for alias in (node.names if isinstance(node, ast.Import) else [])} | {
        (node.module or "").partition(".")[0] for p in (ROOT / "sharedlib").glob("*.py")
        for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.ImportFrom) and not node.level}
    assert imported - {"sharedlib"} <= set(sys.stdlib_module_names)


def test_every_canary_module_imports_and_the_cli_answers_without_loginsvc(tmp_path: Path) -> None:
    code = """
import importlib, json, pkgutil, sys
import canary
names = [m.name for m in pkgutil.walk_packages(canary.__path__, "canary.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
from canary.cli.main import main
try:
    main(["--help"])
except SystemExit:
    pass
print(json.dumps({"modules": len(names), "foreign": sorted(m for m in sys.modules if m.split(".")[0] in ("loginsvc", "django"))}))
"""
    p = run(code, cwd=tmp_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    got = json.loads(out.strip().splitlines()[-1])
    assert got["foreign"] == [] and got["modules"] > 40, got
    assert "serve" in out


def test_a_router_serves_a_request_without_loginsvc(tmp_path: Path) -> None:
    """/healthz is answered by the router itself: no node needed, the whole front path runs."""
    port, admin = free_port(), free_port()
    code = "import runpy, sys; sys.argv[0] = 'canary'; runpy.run_module('canary', run_name='__main__')"
    p = run(code, "serve", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
            "--cluster", "blue=127.0.0.1:9", "--cluster", "green=127.0.0.1:9", cwd=tmp_path)
    try:
        import urllib.request

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return r.status == 200 and r.read() == b"ok\n"
            except OSError:
                return p.poll() is not None
        wait_for(healthy, 20, "the router's /healthz")
        assert p.poll() is None, p.communicate()[1][-2000:]
    finally:
        p.terminate()
        p.communicate(timeout=10)


def _top_level_imports(folder: Path) -> dict[str, set[str]]:
    """Each module's imported top-level names, anywhere in the file, named strings of import_module included."""
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.partition(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names.add((node.module or "").partition(".")[0])
            elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                  and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")):
                names.add(str(node.args[0].value).partition(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_no_router_module_names_the_login_service_and_no_node_module_names_the_router() -> None:
    """Statically, so imports inside functions or behind `except ImportError` cannot slip past the run above."""
    router = sorted(f for f, names in _top_level_imports(ROOT / "canary").items() if names & {"loginsvc", "django"})
    node = sorted(f for f, names in _top_level_imports(ROOT / "loginsvc").items() if "canary" in names)
    assert (router, node) == ([], [])
