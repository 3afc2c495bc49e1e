"""What a scenario does to the stack while it runs: the router's ops API (share, status) and `python -m deploy kill`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from deploy.router_client import RouterClient
from deploy.router_client import RouterError as OpsError  # the ops API refused or is unreachable, or a kill failed

ROOT = Path(__file__).resolve().parent.parent


class Ops(RouterClient):
    """deploy's client of the router's admin listener, plus the stack's chaos verb."""

    def kill(self, target: str) -> str:
        """`python -m deploy kill TARGET` (SIGKILL; supervisord brings the processes back): its output."""
        result = subprocess.run([sys.executable, "-m", "deploy", "--var-dir", str(self.var), "kill",
                                 target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        if result.returncode:
            raise OpsError(f"python -m deploy kill {target}: {(result.stderr or result.stdout).strip()}")
        return result.stdout.strip()


def roles(status: dict[str, Any]) -> dict[str, str]:
    return {"stable": status["stable"], "canary": status["canary"]}


def nodes_per_cluster(status: dict[str, Any]) -> dict[str, int]:
    return {name: len(cluster["nodes"]) for name, cluster in status["clusters"].items()}


def healed(status: dict[str, Any], cluster: str) -> bool:
    """Every node of `cluster` passes its health checks and the router sends it its full share again
    (slow start over): the end of a failover window."""
    entry = status["clusters"].get(cluster)
    if entry is None:
        return False
    return (bool(entry["nodes"]) and all(n["health"] == "healthy" for n in entry["nodes"])
            and entry.get("available", True) and float(entry.get("slow_start_factor", 1.0)) >= 1.0)
