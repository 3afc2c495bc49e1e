"""Observability: request ids, structured logs, Prometheus metrics, Sentry, and X-Served-By."""
