"""Shared fixtures: the suite's Redis, users, real gunicorn nodes."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from deploy.redis_server import RedisServer
from loginsvc.accounts import backends
from tests import plugin
from tests.support import LoginNode, fresh_database, manage, node_env, require

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fresh_redis() -> Iterator[None]:
    """Every test starts with an empty Redis, so throttle counters never leak between tests."""
    plugin.REDIS.client().flushall()
    backends._users.clear()  # test transactions roll back, so a user id can come back as someone else
    yield


@pytest.fixture(scope="session", autouse=True)
def _close_readyz_connection(django_db_setup: None) -> Iterator[None]:
    """/readyz keeps a connection on its own thread; close it before the test database is dropped."""
    yield
    from loginsvc.health import checks

    checks.close_connections()


@pytest.fixture
def user(db: None):
    from loginsvc.accounts.models import User

    return User.objects.create_user("Ann.Example@Example.test", PASSWORD)


@pytest.fixture
def mailbox(settings: Any) -> Iterator[Any]:
    """A real SMTP server (aiosmtpd) on a free port that the mail outbox delivers to (EMAIL_URL)."""
    from aiosmtpd.controller import Controller

    from deploy.node import free_port
    from loginsvc.mail import smtp
    from tests.support import Mailbox

    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_SERVER = smtp.parse(f"smtp://127.0.0.1:{port}")
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def client() -> Client:
    return Client(enforce_csrf_checks=True)


def csrf_from(client: Client) -> str:
    client.get("/api/session")
    return client.cookies["csrftoken"].value


def login(client: Client, email: str, password: str, **extra: object):
    return client.post(
        "/login/", {"username": email, "password": password, "csrfmiddlewaretoken": csrf_from(client), **extra}
    )


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "var").mkdir()
    return tmp_path


@pytest.fixture
def stack(scratch: Path) -> Iterator[Callable[..., LoginNode]]:
    """A factory of real gunicorn nodes sharing one database and the suite's Redis (or another)."""
    nodes: list[LoginNode] = []
    migrated: set[str] = set()

    def start(name: str, cluster: str = "blue", redis_url: str | None = None, **env: str) -> LoginNode:
        environment = node_env(scratch / "var", redis_url or plugin.REDIS.url, **env)
        database = environment.get("DATABASE_URL", "sqlite")
        if database not in migrated:
            fresh_database(environment)
            migrated.add(database)
        node = LoginNode(environment, cluster, name, scratch).start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:      # all at once: a test's teardown takes one node's stop, not the sum
        node.begin_stop()
    for node in nodes:
        node.wait_stopped()


@pytest.fixture
def own_redis(scratch: Path) -> Iterator[RedisServer]:
    """A Redis for one test only, for tests that kill it."""
    server = RedisServer(scratch / "own-redis", port=plugin.free_port()).start()
    yield server
    server.stop()


def create_user_in(env_node: LoginNode, email: str, password: str) -> None:
    """Create an account the way an operator would: `manage.py createsuperuser --noinput`."""
    env = dict(env_node.env, DJANGO_SUPERUSER_PASSWORD=password)
    manage(env, "createsuperuser", "--noinput", "--email", email)


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[object]:
    """Headless Chromium through chromedriver (tests marked `browser`)."""
    require(bool(CHROMIUM and CHROMEDRIVER),
            "headless Chromium needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=900,700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()
