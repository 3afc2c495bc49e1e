"""canary/'s modules import one another without a circle, not even for type hints or inside a function, and its
subpackages depend one way only, in the order docs/router.md declares."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "canary"
# Lowest first: a subpackage may import only those before it (and itself). canary/__init__.py and __main__.py
# stand outside: the package's start-up (the compiled-or-not choice) and `python -m canary`.
ORDER = ("native", "config", "dataplane", "discovery", "automation", "alerts", "admin", "cli")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def canary_imports(path: Path, modules: set[str], root: Path = ROOT) -> set[str]:
    """Every canary module `path` imports, anywhere in the file (top level, under TYPE_CHECKING, in functions)."""
    here = module_name(path, root)
    package = here if path.stem == "__init__" else here.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            candidates = [f"{base}.{a.name}" for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.Call) and _names_a_module(node) and isinstance(node.args[0], ast.Constant):
            candidates = [str(node.args[0].value)]   # importlib.import_module("canary.…") / __import__("canary.…")
        else:
            continue
        # Importing canary.x.y runs canary/x/__init__.py too: an edge to every package on the way.
        out.update(p for c in candidates for p in _with_packages(c) if p in modules)
    return out - {here}


def _names_a_module(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__") and bool(call.args)


def _with_packages(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts) + 1)]


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: canary_imports(path, modules) for name, path in paths.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ORDER) else None


def test_every_subpackage_is_in_the_order() -> None:
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()) == sorted(ORDER)
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py"]


def test_no_module_imports_itself_back() -> None:
    assert cycles(graph()) == []


def test_subpackages_import_only_those_below_them() -> None:
    wrong = sorted(f"{a} imports {b}" for a, deps in graph().items() for b in deps
                   if (pa := subpackage(a)) is not None and (pb := subpackage(b)) is not None
                   and ORDER.index(pb) > ORDER.index(pa))
    assert wrong == []


def test_native_and_config_stand_on_nothing_of_the_router() -> None:
    """The bottom of the order, side by side: neither imports another subpackage (docs/architecture.md)."""
    wrong = sorted(f"{a} imports {b}" for a, deps in graph().items() for b in deps
                   if subpackage(a) in ("native", "config") and subpackage(b) != subpackage(a))
    assert wrong == []


def test_the_package_start_up_needs_only_the_native_choice() -> None:
    """canary/__init__.py runs before every module of the router: it may only choose compiled or plain Python."""
    assert graph()["canary"] <= {"canary.native", "canary.native.compiled"}


def test_subpackage_inits_import_nothing() -> None:
    """Importing any module of a subpackage runs its __init__.py: re-exports there would hide edges and circles."""
    busy = [str(p.relative_to(ROOT)) for p in PACKAGE.glob("*/__init__.py")
            if any(isinstance(n, (ast.Import, ast.ImportFrom)) and not (isinstance(n, ast.ImportFrom)
                   and n.module == "__future__") for n in ast.walk(ast.parse(p.read_text())))]
    assert busy == []


def test_the_scan_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Relative and absolute, under TYPE_CHECKING and inside functions; and a circle is found."""
    pkg = tmp_path / "canary" / "dataplane"
    pkg.mkdir(parents=True)
    probe = pkg / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .exchange import Exchange\n"
                     "def f():\n    from canary.admin import api\n    import canary.cli.main\n"
                     "from ..config import settings\nfrom . import pin\n"
                     "import importlib\ndef g():\n    importlib.import_module('canary.alerts.outbox')\n")
    known = {"canary.dataplane.exchange", "canary.admin.api", "canary.cli.main", "canary.config.settings",
             "canary.dataplane.pin", "canary.alerts.outbox", "canary.cli", "canary.alerts"}
    assert canary_imports(probe, known, tmp_path) == known
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
