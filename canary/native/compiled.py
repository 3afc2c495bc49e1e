"""Which data plane modules this process runs: the mypyc-compiled ones, or their plain-Python source.

The data plane (canary/dataplane/, every module of the request path) is compiled as one group. The source stays
plain, typed Python; mypyc turns the classes of the request path into C extension classes
(attributes in C structs, direct calls between them), which roughly halves the instructions per request
(docs/benchmarks.md). The plain-Python modules remain the reference: the package loads them instead when

- ``CANARY_PURE_PYTHON=1`` is set (tests run both paths), or
- no build is there (no compiler at install: the router simply runs slower), or
- any data plane module's source changed since the build (its SHA-256 differs from the manifest): a stale
  extension must never run code other than the source beside it.

canary/native/build.py compiles them (`make install`); canary/__init__.py calls select() first thing.
"""
from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Mapping, Sequence

ROOT = Path(__file__).resolve().parents[2]
HOT_PACKAGE = "canary.dataplane"       # compiled whole: every module of the package is on the request path
PACKAGE = ROOT / "canary" / "dataplane"
HOT_MODULES = tuple(sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"))
GROUP = f"{HOT_PACKAGE}.native"   # mypyc's shared library, inside the package: canary/dataplane/native__mypyc.<suffix>
MANIFEST = PACKAGE / "native-build.json"
PURE_ENV = "CANARY_PURE_PYTHON"
_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def source_digests() -> dict[str, str]:
    return {m: hashlib.sha256((PACKAGE / f"{m}.py").read_bytes()).hexdigest() for m in HOT_MODULES}


def artifacts() -> list[Path]:
    return [PACKAGE / f"{m}{_SUFFIX}" for m in HOT_MODULES] + [PACKAGE / f"native__mypyc{_SUFFIX}"]


def why_pure(environ: Mapping[str, str] = os.environ, manifest: Path = MANIFEST) -> str | None:
    """None when the compiled modules match their sources and may be used; otherwise the reason not to."""
    if environ.get(PURE_ENV, "") not in ("", "0"):
        return f"{PURE_ENV} is set"
    try:
        built = json.loads(manifest.read_text())
    except FileNotFoundError:
        return "not compiled (run `make install` or `python -m canary.native.build build`)"
    except (OSError, ValueError):
        return f"no readable {manifest.name}"
    sources = built.get("sources", {}) if isinstance(built, dict) else {}
    stale = sorted(m for m, d in source_digests().items() if sources.get(m) != d)
    if stale or built.get("python") != sys.version:
        return "stale build: changed since it was compiled: " + (", ".join(stale) or "the Python version")
    missing = [p.name for p in artifacts() if not p.exists()]
    if missing:
        return "not compiled: missing " + ", ".join(missing)
    return None


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Loads the data plane modules from their .py files even where a compiled extension sits beside them."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != HOT_PACKAGE or name not in HOT_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, PACKAGE / f"{name}.py")


REASON: str | None = None     # why this process runs the pure-Python modules (None: compiled), set at import


def select() -> None:
    """Called once from canary/__init__.py, before any data plane module is imported."""
    global REASON
    REASON = why_pure()
    if REASON is not None and not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())


def status() -> str:
    return "compiled (mypyc)" if REASON is None else f"pure Python: {REASON}"


def loaded_compiled() -> bool:
    """Whether the modules actually imported in this process are the compiled ones."""
    return all(not str(getattr(sys.modules.get(f"{HOT_PACKAGE}.{m}"), "__file__", ".py")).endswith(".py")
               for m in HOT_MODULES if f"{HOT_PACKAGE}.{m}" in sys.modules)
