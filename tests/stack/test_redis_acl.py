"""The shipped Redis ACL (deploy/redis-users.conf.example) in a real redis-server: each account reaches its own keys only."""
from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import AuthenticationError, NoPermissionError

from canary.discovery.state import CHANNEL, KEY, RedisStore, initial_state
from deploy.redis_server import RedisServer
from tests.conftest import create_user_in
from tests.plugin import free_port
from tests.support import ROOT, Browser, LoginNode

ACL = ROOT / "deploy" / "redis-users.conf.example"
PASSWORDS = {"canary-router": "router-password-for-the-acl-test", "loginsvc": "service-password-for-the-acl-test",
             "ops": "operator-password-for-the-acl-test"}
# Keys and channels of the other account, which each must be refused.
LOGIN_KEYS = ("loginsvc:1:django.contrib.sessions.cached_dbabc", "loginsvc:bf:a:0123", "loginsvc:auth-gen:7")


def filled_in(text: str) -> str:
    """The example with each account's REPLACE-ME placeholder replaced by its test password."""
    users = re.findall(r"^user (\S+) ", text, re.M)
    assert {"default", *PASSWORDS} == set(users), users
    return re.sub(r"^(user (\S+) .*)>REPLACE-ME", lambda m: f"{m[1]}>{PASSWORDS[m[2]]}", text, flags=re.M)


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """redis-server with the example included as it is shipped (comments and all), passwords filled in."""
    tmp = tmp_path_factory.mktemp("acl")
    users = tmp / "users.conf"
    users.write_text(filled_in(ACL.read_text()))
    assert "REPLACE-ME" not in users.read_text()
    server = RedisServer(tmp / "redis", port=free_port(), extra_args=["--include", str(users)],
                         auth=("ops", PASSWORDS["ops"])).start()
    yield server
    server.stop()


@pytest.fixture
def as_user(acl_redis: RedisServer) -> Iterator[Callable[[str, int], redis.Redis]]:
    """Clients logged in as an account, on a database; the ACL log starts empty and ends with nothing denied."""
    ops = acl_redis.client()
    ops.flushall()
    ops.execute_command("ACL", "LOG", "RESET")
    clients: list[redis.Redis] = []

    def connect(user: str, db: int) -> redis.Redis:
        clients.append(redis.Redis.from_url(url(acl_redis, user, db), socket_timeout=2))
        return clients[-1]

    yield connect
    for client in clients:
        client.close()


def url(server: RedisServer, user: str, db: int) -> str:
    return f"redis://{user}:{PASSWORDS[user]}@127.0.0.1:{server.port}/{db}"


def denied(server: RedisServer) -> list[tuple[str, str, str]]:
    """(user, reason, object) of every command the server refused since the last reset, except redis-py's
    connection handshake: its optional CLIENT SETINFO / MAINT_NOTIFICATIONS, whose refusal it ignores
    (CLIENT itself is @dangerous: it lists and kills other clients; its harmless subcommands differ
    between Redis versions, so the accounts get none)."""
    return [(e["username"], e["reason"], e["object"]) for e in server.client().acl_log()
            if (e["reason"], e["object"]) != ("command", "client")]


def refused(call: Callable[[], object]) -> bool:
    try:
        call()
    except NoPermissionError:
        return True
    return False


def test_without_an_account_nothing_answers(acl_redis: RedisServer) -> None:
    anonymous = redis.Redis(port=acl_redis.port, socket_timeout=2)
    with pytest.raises(AuthenticationError):
        anonymous.get(KEY)
    with pytest.raises(AuthenticationError):
        redis.Redis.from_url(url(acl_redis, "loginsvc", 0).replace("service", "guessed"), socket_timeout=2).ping()


def test_the_router_account_reaches_its_state_and_channel_only(acl_redis: RedisServer, as_user) -> None:
    router, ops = as_user("canary-router", 1), acl_redis.client()
    assert router.set(KEY, "{}") and router.get(KEY) == b"{}" and router.ping()
    pubsub = router.pubsub()
    pubsub.subscribe(CHANNEL)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    assert router.publish(CHANNEL, "changed") == 1
    assert pubsub.get_message(timeout=2)["data"] == b"changed"
    pubsub.close()
    assert denied(acl_redis) == []
    ops.set(LOGIN_KEYS[0], "session")
    for db in (0, 1):  # the keys' patterns hold in every database
        other = as_user("canary-router", db)
        for key in LOGIN_KEYS:
            assert refused(lambda: other.get(key)) and refused(lambda: other.set(key, "forged")), (db, key)
        assert refused(lambda: other.delete(LOGIN_KEYS[0])) and refused(lambda: other.publish("loginsvc:x", "x"))
    for command in (("KEYS", "*"), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("EVAL", "return 1", "0"), ("INFO",),
                    ("DEL", KEY), ("SCAN", "0")):
        assert refused(lambda: router.execute_command(*command)), command
    outsider = router.pubsub()
    with pytest.raises(NoPermissionError):
        outsider.subscribe("loginsvc:anything")
        outsider.get_message(timeout=2)
    assert ops.get(LOGIN_KEYS[0]) == b"session"


def test_the_real_router_state_store_works_under_its_account(acl_redis: RedisServer, as_user) -> None:
    """canary.discovery.state.RedisStore, two routers' worth: SET NX, GET, PUBLISH, SUBSCRIBE, all allowed; nothing denied."""
    async def scenario() -> dict:
        first, second = RedisStore(url(acl_redis, "canary-router", 1)), RedisStore(url(acl_redis, "canary-router", 1))
        seen: asyncio.Queue[dict] = asyncio.Queue()
        try:
            assert (await first.init(initial_state("blue", "green", 12.0)))["percent"] == 12.0
            second.watch(seen.put_nowait)
            await asyncio.wait_for(seen.get(), 5)  # the catch-up reload after subscribing
            await first.save(dict(initial_state("blue", "green", 20.0), version=1))
            while (state := await asyncio.wait_for(seen.get(), 5))["version"] != 1:
                pass
            return state
        finally:
            await first.close()
            await second.close()
    assert asyncio.run(scenario())["percent"] == 20.0
    assert json.loads(as_user("ops", 1).get(KEY))["version"] == 1
    assert denied(acl_redis) == []


def test_the_login_service_account_reaches_its_keys_only(acl_redis: RedisServer, as_user) -> None:
    service, ops = as_user("loginsvc", 0), as_user("ops", 1)
    for key in LOGIN_KEYS:
        assert service.set(key, "1", ex=60) and service.incr(key) == 2 and service.expire(key, 60)
    assert service.eval("return redis.call('INCR', KEYS[1])", 1, LOGIN_KEYS[1]) == 3
    assert denied(acl_redis) == []
    ops.set(KEY, "state")
    other = as_user("loginsvc", 1)
    assert refused(lambda: other.get(KEY)) and refused(lambda: other.set(KEY, "forged"))
    assert refused(lambda: other.publish(CHANNEL, "forged")) and refused(lambda: service.execute_command("FLUSHALL"))
    assert refused(lambda: service.eval("return redis.call('GET', KEYS[1])", 1, KEY))
    assert refused(lambda: service.keys("*")) and ops.get(KEY) == b"state"


def test_a_real_login_node_works_under_its_account(acl_redis: RedisServer, as_user, stack, scratch: Path) -> None:
    """Sign-in, a failed guess (the throttle's Lua script), the session's cache and /readyz, as `loginsvc`."""
    node: LoginNode = stack("blue-1", redis_url=url(acl_redis, "loginsvc", 0))
    create_user_in(node, "acl@example.test", "a password for the ACL test")
    browser = Browser(node.url)
    assert browser.login("acl@example.test", "not the password").status_code == 401
    assert browser.login("acl@example.test", "a password for the ACL test").status_code == 200
    assert browser.whoami()["email"] == "acl@example.test"
    assert browser.call("GET", "/readyz").status_code == 200
    keys = {k.decode() for k in acl_redis.client().keys("*")}
    assert any(k.startswith("loginsvc:1:django.contrib.sessions.cached_db") for k in keys), keys
    assert any(k.startswith("loginsvc:bf:") for k in keys), keys
    assert denied(acl_redis) == []
