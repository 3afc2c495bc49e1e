"""Compiles the data plane (canary/dataplane/) with mypyc, in place (what `make install` runs); compiled.py picks it.

    python -m canary.native.build build [--if-stale]
    python -m canary.native.build status        # compiled or pure Python, and why
    python -m canary.native.build clean
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys

from canary.native.compiled import (GROUP, HOT_MODULES, MANIFEST, PACKAGE, ROOT, artifacts, source_digests, status,
                                    why_pure)


def clean() -> None:
    for p in [*artifacts(), MANIFEST]:
        p.unlink(missing_ok=True)
    shutil.rmtree(ROOT / "build" / "native", ignore_errors=True)


def build(if_stale: bool = False) -> int:
    """Compile the data plane in place (a subprocess: setuptools wants a fresh argv and working directory)."""
    if if_stale and why_pure({}) is None:
        print("canary.native: the compiled modules are up to date")
        return 0
    clean()
    script = ("import sys; from setuptools import setup; from mypyc.build import mypycify\n"
              f"setup(name='canary-native', ext_modules=mypycify(sys.argv[1:], opt_level='3', group_name={GROUP!r}, "
              "target_dir='build/native'), script_args=['build_ext', '--inplace', '--build-temp', 'build/native'])")
    sources = [str((PACKAGE / f"{m}.py").relative_to(ROOT)) for m in HOT_MODULES]
    r = subprocess.run([sys.executable, "-c", script, *sources], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
        print("canary.native: compiling failed; the router runs its pure-Python modules", file=sys.stderr)
        clean()
        return 1
    MANIFEST.write_text(json.dumps({"python": sys.version, "sources": source_digests()}, indent=1) + "\n")
    print(f"canary.native: compiled {len(HOT_MODULES)} modules with mypyc")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m canary.native.build", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    b = sub.add_parser("build", help="compile the data plane in place")
    b.add_argument("--if-stale", action="store_true", help="only when missing or older than the sources")
    sub.add_parser("status", help="compiled or pure Python, and why")
    sub.add_parser("clean", help="remove the compiled modules")
    a = p.parse_args(argv)
    if a.verb == "build":
        return build(a.if_stale)
    if a.verb == "clean":
        clean()
        return 0
    print(status())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
