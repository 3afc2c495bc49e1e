"""`python -m loadtests.bench [--only NAME]` (`make bench`): the benchmarks in one run, tables on stdout, JSON under var/bench/; the load suites: `python -m loadtests run`."""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from loadtests.bench import hot_path, login_bench, mail_bench, mfa_bench, router_bench, sso_bench, sso_instructions

BENCHMARKS = {"login": login_bench.run, "mfa": mfa_bench.run, "router": router_bench.run, "hot_path": hot_path.run, "sso": sso_bench.run,
              "sso_instructions": sso_instructions.run, "mail": mail_bench.run}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("var/bench"), help="folder for the JSON results")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only these")
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "haproxy") if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin")]
    if missing:
        parser.exit(2, f"make bench needs Debian's {' and '.join(missing)}: apt-get install {' '.join(missing)}\n")
    results = {name: BENCHMARKS[name](args.out) for name in (args.only or BENCHMARKS)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "all.json").write_text(json.dumps(results, indent=2))
    print(f"\nJSON written to {args.out}/")


if __name__ == "__main__":
    main()
