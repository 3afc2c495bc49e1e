"""supervisord event listener: counts how often each program reached RUNNING, for `deploy status`.

supervisord itself keeps no restart count, but it tells event listeners about every state change
(its documented protocol, spoken here through supervisor.childutils). The counts live in one
small JSON file, replaced atomically, so readers never see half of it.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from supervisor import childutils


def record_start(path: Path, counts: dict[str, int], name: str) -> None:
    counts[name] = counts.get(name, 0) + 1
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(counts, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read_starts(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}


def main(argv: list[str]) -> int:
    path = Path(argv[1])
    counts = read_starts(path)   # a restarted listener keeps counting where it stopped
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        if headers.get("eventname") == "PROCESS_STATE_RUNNING":
            fields = childutils.get_headers(payload.split("\n", 1)[0])
            try:
                record_start(path, counts, fields["processname"])
            except (KeyError, OSError) as exc:
                print(f"restart-counter: cannot record {fields}: {exc}", file=sys.stderr, flush=True)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
