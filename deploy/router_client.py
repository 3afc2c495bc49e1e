"""The router's admin API as the stack and the load suites use it: status, share, drain/undrain, a cluster's node list."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from canary.cli.main import AdminCallError, admin_request
from canary.config import secret
from deploy.stack import StackSpec


class RouterError(Exception):
    """The admin API is unreachable (status 0) or refused the call (its HTTP status)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class RouterClient:
    """One router's admin listener at `base`, with the token of the stack whose state is in `var`."""

    def __init__(self, base: str, var: Path, timeout: float = 5.0) -> None:
        self.base = base.rstrip("/")
        self.timeout, self.var = timeout, var
        self.token_file = var / "canary-admin-token"

    @classmethod
    def of(cls, spec: StackSpec) -> "RouterClient":
        return cls(spec.admin_url, spec.var)

    def token(self) -> str:
        """The router's own lookup (CANARY_ADMIN_TOKEN, CANARY_ADMIN_TOKEN_FILE), defaulting to this stack's file."""
        token = secret.read_secret("CANARY_ADMIN_TOKEN", "CANARY_ADMIN_TOKEN_FILE", str(self.token_file))
        if not token:
            raise RouterError(f"no admin token: set CANARY_ADMIN_TOKEN or start the stack ({self.token_file})", 401)
        return token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            return admin_request(self.base, self.token(), method, path, body, self.timeout)
        except AdminCallError as exc:
            raise RouterError(f"router admin API {method} {path}: {exc}", exc.status) from None

    def status(self) -> dict[str, Any]:
        return self.call("GET", "/api/status")

    def node_states(self) -> dict[str, dict[str, Any]]:
        """node name -> its entry in the router's status (state, outstanding, requests, ejections)."""
        return {n["name"]: n for c in self.status()["clusters"].values() for n in c["nodes"]}

    def ramp(self, percent: float) -> dict[str, Any]:
        return self.call("POST", "/api/ramp", {"percent": percent})

    def drain(self, target: str) -> None:
        self.call("POST", "/api/drain", {"target": target})

    def undrain(self, target: str) -> None:
        self.call("POST", "/api/undrain", {"target": target})

    def set_nodes(self, cluster: str, nodes: list[dict[str, Any]]) -> None:
        self.call("PUT", f"/api/clusters/{cluster}/nodes", {"nodes": nodes})
