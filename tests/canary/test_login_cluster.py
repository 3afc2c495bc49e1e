"""The router in front of real gunicorn nodes of the login service: a logged-in user pinned to a
cluster that is SIGKILLed keeps working (and stays logged in) on the other one, then goes home."""
from __future__ import annotations

import time

from canary.dataplane.pin import BUCKETS, PinSigner
from tests.conftest import create_user_in
from tests.support import Browser, wait_for

from .conftest import PIN_SECRET

EMAIL, PASSWORD = "erin@example.test", "a password typed through the router"


def login_cluster_config(blue, green) -> str:
    def cluster(name: str, node) -> str:
        return f'[[clusters]]\nname = "{name}"\nnodes = [{{name = "{node.name}", address = "127.0.0.1:{node.port}"}}]\n'

    return (
        cluster("blue", blue) + cluster("green", green)
        + "[health_check]\ninterval = 0.1\ntimeout = 0.3\nunhealthy_threshold = 2\nhealthy_threshold = 3\n"
        + "[share]\ninitial_percent = 50\nslow_start_window = 1.0\n"
    )


def test_pinned_user_survives_sigkill_of_their_cluster_and_returns_home(stack, router_factory) -> None:
    blue = stack("blue-1", cluster="blue", LOGINSVC_TRUSTED_PROXY_HOPS="1")
    green = stack("green-1", cluster="green", LOGINSVC_TRUSTED_PROXY_HOPS="1")
    create_user_in(blue, EMAIL, PASSWORD)
    router = router_factory(config=login_cluster_config(blue, green))

    browser = Browser(f"http://127.0.0.1:{router.port}")
    pin = PinSigner(PIN_SECRET).make_value(BUCKETS // 100, int(time.time())).decode()  # bucket 100: green at 50 %
    browser.cookies.set("canary_pin", pin)
    response = browser.login(EMAIL, PASSWORD)
    assert response.status_code == 200, response.text
    assert response.headers["X-Served-By"] == "green/green-1"  # the node's own header, kept by the router

    failures, served = [], []
    deadline = time.monotonic() + 4.0
    killed_at = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # a browser polling every 50 ms
        if killed_at and time.monotonic() >= killed_at:
            green.kill()
            killed_at = 0
        reply = browser.call("GET", "/api/session")
        if reply.status_code != 200 or reply.json().get("email") != EMAIL:
            failures.append((reply.status_code, reply.text[:100]))
        served.append(reply.headers.get("X-Served-By"))
        time.sleep(0.05)
    assert not failures
    assert served[0] == "green/green-1" and served[-1] == "blue/blue-1"
    assert browser.cookies["canary_pin"] == pin  # the pin is kept, so the user can go home later

    green.start()

    def home_again() -> bool:      # signed in on every answer while it waits
        reply = browser.call("GET", "/api/session")
        assert reply.status_code == 200 and reply.json()["email"] == EMAIL
        return reply.headers["X-Served-By"] == "green/green-1"
    wait_for(home_again, 15, "the user going home to green after it healed", interval=0.1)


def test_lockout_through_the_router_keys_on_the_browser_not_on_forged_headers(stack, router_factory) -> None:
    """Nodes trust one hop (the router); the router overwrites X-Forwarded-For, so a client that
    invents a new address per guess is still counted as itself, and another browser is not locked."""
    blue = stack("blue-1", cluster="blue", LOGINSVC_TRUSTED_PROXY_HOPS="1")
    green = stack("green-1", cluster="green", LOGINSVC_TRUSTED_PROXY_HOPS="1")
    create_user_in(blue, EMAIL, PASSWORD)
    router = router_factory(config=login_cluster_config(blue, green))
    base = f"http://127.0.0.1:{router.port}"

    attacker = Browser(base)
    statuses = []
    for i in range(11):
        attacker.headers["X-Forwarded-For"] = f"198.51.100.{i}"
        statuses.append(attacker.login(EMAIL, f"guess {i}").status_code)
    assert statuses == [401] * 10 + [429]
    assert attacker.login(EMAIL, PASSWORD).status_code == 429

    # The nodes saw the router's view of the client (127.0.0.1), so the lock is on that pair; the
    # same account from another client address is not locked (checked on a node directly, with
    # the one trusted hop it expects).
    elsewhere = Browser(blue.url)
    elsewhere.headers["X-Forwarded-For"] = "203.0.113.77"
    assert elsewhere.login(EMAIL, PASSWORD).status_code == 200


def test_redis_down_behind_the_router_keeps_users_logged_in(stack, router_factory, own_redis) -> None:
    """Redis killed: every node's /readyz says 503, the router panics and keeps routing by split,
    and the nodes serve sessions from the database."""
    blue = stack("blue-1", cluster="blue", redis_url=own_redis.url, LOGINSVC_TRUSTED_PROXY_HOPS="1")
    green = stack("green-1", cluster="green", redis_url=own_redis.url, LOGINSVC_TRUSTED_PROXY_HOPS="1")
    create_user_in(blue, EMAIL, PASSWORD)
    router = router_factory(config=login_cluster_config(blue, green))
    browser = Browser(f"http://127.0.0.1:{router.port}")
    assert browser.login(EMAIL, PASSWORD).status_code == 200

    own_redis.kill()
    router.wait_status(lambda s: s["panic"], timeout=5)
    for _ in range(20):
        reply = browser.call("GET", "/api/session")
        assert reply.status_code == 200 and reply.json()["email"] == EMAIL
    own_redis.start()
    router.wait_status(lambda s: not s["panic"], timeout=5)
    assert browser.whoami()["email"] == EMAIL
