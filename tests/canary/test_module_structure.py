"""The router's dependencies run one way: every module imports on its own, and only the entry point knows the process."""
from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "canary"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
ENTRY_POINTS = {"cli"}     # builds the RouterProcess (canary/server.py) and runs it


def imported_modules(path: Path) -> set[str]:
    """Every canary module `path` imports, also under `if TYPE_CHECKING:` (as canary.NAME)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1:
                base = f"canary.{base}" if base else "canary"
            if base == "canary":
                out.update(f"canary.{a.name}" for a in node.names)
            elif base.startswith("canary."):
                out.add(base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("canary."))
    return out


def test_the_module_list_is_read() -> None:
    assert {"server", "proxy", "exchange", "request_context", "routing"} <= set(MODULES)


def test_each_module_imports_first_in_a_fresh_interpreter() -> None:
    """Imported first, each module pulls in its own dependencies: there is no import cycle that only a
    particular order hides."""
    def run(name: str) -> tuple[str, int, str]:
        r = subprocess.run([sys.executable, "-c", f"import canary.{name}"], capture_output=True, text=True,
                           timeout=60, cwd=PACKAGE.parent)
        return name, r.returncode, r.stderr[-400:]
    with ThreadPoolExecutor(4) as pool:
        failed = [(n, err) for n, rc, err in pool.map(run, MODULES) if rc != 0]
    assert failed == []


@pytest.mark.parametrize("name", [m for m in MODULES if m not in ENTRY_POINTS | {"server"}])
def test_only_the_entry_point_imports_the_process(name: str) -> None:
    """Components never reach back into the process object, not even for type hints."""
    assert "canary.server" not in imported_modules(PACKAGE / f"{name}.py")


def test_the_import_scan_sees_type_checking_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .server import RouterProcess\n")
    assert imported_modules(probe) == {"canary.server"}
    assert "canary.server" in imported_modules(PACKAGE / "cli.py")
