"""What a scenario does to the stack while it runs: the router's ops API (share, status) and `python -m deploy kill`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from canary import secret
from canary.cli import AdminCallError, admin_request

ROOT = Path(__file__).resolve().parent.parent


class OpsError(Exception):
    """The ops API refused or could not be reached, or a deploy verb failed: one line."""


class Ops:
    """The router's admin listener (bearer token as `python -m canary` finds it) and the stack's deploy verbs."""

    def __init__(self, admin: str, var_dir: Path, timeout: float = 5.0) -> None:
        self.admin, self.var_dir, self.timeout = admin.rstrip("/"), var_dir, timeout

    def token(self) -> str:
        token = secret.read_secret("CANARY_ADMIN_TOKEN", "CANARY_ADMIN_TOKEN_FILE",
                                   str(self.var_dir / "canary-admin-token"))
        if not token:
            raise OpsError(f"no admin token: set CANARY_ADMIN_TOKEN or start the stack ({self.var_dir})")
        return token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            return admin_request(self.admin, self.token(), method, path, body, self.timeout)
        except AdminCallError as exc:
            raise OpsError(f"router admin API {method} {path}: {exc}") from None

    def status(self) -> dict[str, Any]:
        return self.call("GET", "/api/status")

    def ramp(self, percent: float) -> dict[str, Any]:
        return self.call("POST", "/api/ramp", {"percent": percent})

    def kill(self, target: str) -> str:
        """`python -m deploy kill TARGET` (SIGKILL; supervisord brings the processes back): its output."""
        result = subprocess.run([sys.executable, "-m", "deploy", "--var-dir", str(self.var_dir), "kill", target],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
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
