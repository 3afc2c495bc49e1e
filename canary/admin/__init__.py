"""The admin listener: API, dashboard, ops sign-in and sessions, status views, Prometheus metrics."""
