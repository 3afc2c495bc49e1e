"""Redis and PostgreSQL over TLS: the URLs the Secret template and the VM env files ship are TLS, verify the
server, and are understood that way by the code that reads them (redis-py, django-redis, dj-database-url,
the router's state store)."""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys

import redis
import redis.asyncio

from canary.discovery.state import RedisStore
from tests.support import ROOT
from tests.test_deploy_manifests import SYSTEMD, env_file_names, secret_values

SERVICE_ENV = env_file_names(SYSTEMD / "loginsvc.env.example")
# Where each shipped URL is, and whether the router (async redis-py) or the login service reads it.
REDIS_URLS = {"k8s loginsvc-secrets": (secret_values()["loginsvc-secrets", "redis-url"], "service"),
              "k8s canary-router-secrets": (secret_values()["canary-router-secrets", "redis-url"], "router"),
              "loginsvc.env.example": (SERVICE_ENV["REDIS_URL"], "service"),
              "canary.env.example": (env_file_names(SYSTEMD / "canary.env.example")["REDIS_URL"], "router")}
DATABASE_URLS = {"k8s loginsvc-secrets": secret_values()["loginsvc-secrets", "database-url"],
                 "loginsvc.env.example": SERVICE_ENV["DATABASE_URL"]}


def assert_verifying_tls(connection: object, where: str) -> None:
    assert isinstance(connection, (redis.SSLConnection, redis.asyncio.SSLConnection)), where
    assert connection.cert_reqs == ssl.CERT_REQUIRED and connection.check_hostname is True, where
    assert os.path.isabs(connection.ca_certs), where  # the CA file the manifests mount / the VMs install


def test_redis_urls_are_tls_with_the_server_verified() -> None:
    for where, (url, reader) in REDIS_URLS.items():
        assert url.startswith("rediss://"), where
        assert_verifying_tls(redis.ConnectionPool.from_url(url).make_connection(), where)
        if reader == "router":  # the router's own client, as canary serve builds it
            assert_verifying_tls(RedisStore(url).redis.connection_pool.make_connection(), where)


def test_the_login_service_settings_keep_tls_for_both() -> None:
    """Django's settings as a node loads them: django-redis' connection, psycopg's connect parameters."""
    probe = ("import django, json; django.setup()\n"
             "from django.db import connection\n"
             "from django_redis import get_redis_connection\n"
             "c = get_redis_connection('default').connection_pool.make_connection()\n"
             "p = connection.get_connection_params()\n"
             "print(json.dumps({'redis': [type(c).__name__, int(c.cert_reqs), c.check_hostname, c.ca_certs],\n"
             "                  'db': {k: p.get(k) for k in ('sslmode', 'sslrootcert', 'host', 'connect_timeout')}}))")
    for where, database_url in DATABASE_URLS.items():
        redis_url = REDIS_URLS[where][0]
        env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url, LOGINSVC_MODE="local",
                   DJANGO_SETTINGS_MODULE="loginsvc.settings")
        result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 0, result.stderr[-800:]
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        assert seen["redis"][:3] == ["SSLConnection", ssl.CERT_REQUIRED, True], (where, seen)
        assert seen["db"]["sslmode"] == "verify-full" and os.path.isabs(seen["db"]["sslrootcert"]), (where, seen)
        assert seen["db"]["host"].endswith(".example.com") and seen["db"]["connect_timeout"] == 3, (where, seen)
