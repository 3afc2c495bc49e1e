"""The router's dependencies run one way: every module imports on its own, and only the entry point knows the process."""
from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "canary"
MODULES = sorted(".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py")
                 if p.stem not in ("__init__", "__main__"))
PROCESS = "canary.cli.router_process"
ENTRY_POINTS = {"cli.main"}     # builds the RouterProcess (canary/cli/router_process.py) and runs it


def imported_modules(path: Path) -> set[str]:
    """Every canary module `path` imports, also under `if TYPE_CHECKING:` (as canary.NAME)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = ".".join(("canary", *path.parent.relative_to(PACKAGE).parts)) if path.is_relative_to(
                    PACKAGE) else "canary"
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.startswith("canary.") or base == "canary":
                # `from canary.admin import dashboard` names a module; `from canary.x.y import Name` a name in one
                folder = PACKAGE.parent.joinpath(*base.split("."))
                out.update(f"{base}.{a.name}" for a in node.names if (folder / f"{a.name}.py").exists())
                if base != "canary" and not folder.is_dir():
                    out.add(base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("canary."))
    return out


def test_the_module_list_is_read() -> None:
    assert {"cli.router_process", "dataplane.downstream", "dataplane.exchange", "dataplane.request_context",
            "dataplane.routing"} <= set(MODULES)


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


@pytest.mark.parametrize("name", [m for m in MODULES if m not in ENTRY_POINTS | {"cli.router_process"}])
def test_only_the_entry_point_imports_the_process(name: str) -> None:
    """Components never reach back into the process object, not even for type hints."""
    assert PROCESS not in imported_modules(PACKAGE.joinpath(*name.split(".")).with_suffix(".py"))


def test_the_import_scan_sees_type_checking_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from canary.cli.router_process import RouterProcess\n")
    assert imported_modules(probe) == {PROCESS}
    assert PROCESS in imported_modules(PACKAGE / "cli" / "main.py")
