"""docs/architecture.md is a map that stays true: every file:function it names exists, every module is listed, and
the middleware chain it draws is the one in the settings, in order."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()
# `path/to/file.py:Name.attr` (several names may follow one path, comma-separated inside one pair of backticks)
REFERENCE = re.compile(r"`([\w/]+\.py):([\w.]+(?:, [\w.]+)*)`")
# Modules whose name says all (Django app wiring) need no line of their own.
WIRING = {"__init__", "__main__", "apps", "urls", "forms"}


def defined_names(path: Path) -> set[str]:
    """Top-level functions, classes, assignments, and Class.method / Class.attribute, of one source file."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        names.add(f"{node.name}.{item.name}")
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        names.add(f"{node.name}.{item.target.id}")
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def references() -> list[tuple[str, str]]:
    return [(path, name) for path, names in REFERENCE.findall(DOC) for name in names.split(", ")]


def test_the_behaviour_map_names_enough_to_be_a_map() -> None:
    assert len(references()) >= 30


def test_every_file_and_function_the_map_names_exists() -> None:
    missing = [f"{path}:{name}" for path, name in references()
               if not (ROOT / path).is_file() or name not in defined_names(ROOT / path)]
    assert missing == []


def test_every_module_is_listed() -> None:
    modules = [p for pkg in ("canary", "loginsvc", "sharedlib") for p in (ROOT / pkg).rglob("*.py")
               if p.stem not in WIRING and "migrations" not in p.parts and "management" not in p.parts]
    listed = set(re.findall(r"`([\w/]+\.py)", DOC)) | {f"{d}/{m}.py" for d, ms in
                                                      re.findall(r"`([\w/]+)/\{([\w,]+)\}\.py`", DOC)
                                                      for m in ms.split(",")}
    unlisted = sorted(str(p.relative_to(ROOT)) for p in modules if str(p.relative_to(ROOT)) not in listed)
    assert unlisted == []


def test_the_middleware_chain_drawn_is_the_settings_one() -> None:
    drawn = re.search(r"<!-- middleware -->\n```\n(.*?)```", DOC, re.S)
    assert drawn is not None
    classes = re.findall(r"[\w.]+Middleware\b", drawn.group(1))
    assert classes == list(settings.MIDDLEWARE)
