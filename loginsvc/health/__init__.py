"""Health: /healthz (alive), /readyz (database and Redis answer) and the node's /metrics."""
