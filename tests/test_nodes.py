"""Real gunicorn nodes sharing Redis and the database: sessions and lockouts hold across nodes."""
from __future__ import annotations

import pytest

from tests.conftest import create_user_in
from tests.support import Browser, wait_for

EMAIL, PASSWORD = "carol@example.test", "a long and careful password"


@pytest.fixture
def two_nodes(stack):
    blue = stack("blue-1", cluster="blue")
    green = stack("green-1", cluster="green")
    create_user_in(blue, EMAIL, PASSWORD)
    return blue, green


def test_login_on_one_node_is_honoured_by_another(two_nodes) -> None:
    blue, green = two_nodes
    browser = Browser(blue.url)
    response = browser.login(EMAIL.upper(), PASSWORD)
    assert response.status_code == 200, response.text
    assert response.headers["X-Served-By"] == "blue/blue-1"
    on_green = browser.call("GET", "/api/session", green.url)
    assert on_green.headers["X-Served-By"] == "green/green-1"
    assert on_green.json()["authenticated"] is True and on_green.json()["email"] == EMAIL
    # Logging out on green ends the session on blue as well.
    browser.call("POST", "/logout/", green.url, headers={"X-CSRFToken": browser.cookies["csrftoken"]})
    assert browser.whoami(blue.url) == {"authenticated": False}


def test_lockout_is_shared_by_nodes(two_nodes) -> None:
    blue, green = two_nodes
    attacker = Browser(blue.url)
    statuses = [attacker.login(EMAIL, f"guess {i}", base_url=(blue.url, green.url)[i % 2]).status_code
                for i in range(10)]
    assert statuses == [401] * 10
    for node in (blue, green):
        response = attacker.login(EMAIL, PASSWORD, base_url=node.url)
        assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0


def test_redis_kill_and_restart_keeps_users_logged_in(stack, own_redis) -> None:
    blue = stack("blue-1", cluster="blue", redis_url=own_redis.url)
    green = stack("green-1", cluster="green", redis_url=own_redis.url)
    create_user_in(blue, EMAIL, PASSWORD)
    browser = Browser(blue.url)
    assert browser.login(EMAIL, PASSWORD).status_code == 200

    own_redis.kill()
    for node in (blue, green):
        assert browser.whoami(node.url)["authenticated"] is True
    assert browser.call("GET", "/readyz").status_code == 503
    newcomer = Browser(green.url)
    assert newcomer.login(EMAIL, PASSWORD).status_code == 200  # logins work without Redis too

    own_redis.start()
    for node in (blue, green):
        assert browser.whoami(node.url)["authenticated"] is True
        assert newcomer.whoami(node.url)["authenticated"] is True
    # /readyz may repeat its last (503) verdict for LOGINSVC_READINESS_CACHE_SECONDS (0.25 s) plus one check
    wait_for(lambda: browser.call("GET", "/readyz").status_code == 200, 3, "/readyz 200 after Redis is back")


def test_node_metrics_aggregate_all_workers(stack) -> None:
    node = stack("blue-1", cluster="blue", WEB_CONCURRENCY="2")
    browser = Browser(node.url)
    for _ in range(20):
        browser.whoami()
    text = browser.call("GET", "/metrics").text
    line = next(l for l in text.splitlines()
                if l.startswith("loginsvc_request_duration_seconds_count") and 'view="api-session"' in l)
    assert float(line.rsplit(" ", 1)[1]) == 20


def test_parallel_guesses_cannot_exceed_the_limit(stack) -> None:
    """Attempts are counted before the password check, so requests in flight cannot all slip in; once
    they have locked the account here, even the right password waits.

    The right password comes after the parallel wrong ones: sent among them, it could be checked first,
    and a successful sign-in rightly clears the pair's count, letting ten more wrong ones through."""
    from concurrent.futures import ThreadPoolExecutor

    node = stack("blue-1", cluster="blue", WEB_CONCURRENCY="2", LOGINSVC_THREADS="4")
    create_user_in(node, EMAIL, PASSWORD)
    token = Browser(node.url).csrf_token()

    def guess(password: str) -> int:
        browser = Browser(node.url)
        browser.cookies.set("csrftoken", token)
        return browser.login(EMAIL, password).status_code

    with ThreadPoolExecutor(max_workers=24) as pool:
        statuses = list(pool.map(guess, [f"guess {i}" for i in range(24)]))
    assert statuses.count(401) <= 10 and statuses.count(429) >= 14, statuses
    assert guess(PASSWORD) == 429


def test_sigterm_turns_readiness_off_while_the_node_still_serves_then_stops(stack) -> None:
    """deploy/gunicorn.conf.py: the master announces not-ready for LOGINSVC_DRAIN_SECONDS before the
    graceful stop, so a router's health checks move traffic away before any connection is refused."""
    import os
    import signal

    import requests

    node = stack("blue-9", cluster="blue", LOGINSVC_DRAIN_SECONDS="2")
    assert requests.get(node.url + "/readyz", timeout=5).status_code == 200
    assert node.process is not None
    os.kill(node.process.pid, signal.SIGTERM)   # the master only, as supervisord and systemd send it
    wait_for(lambda: requests.get(node.url + "/readyz", timeout=5).status_code == 503, 1.5, "readyz 503 on SIGTERM")
    ready = requests.get(node.url + "/readyz", timeout=5)       # still draining (2 s)
    assert ready.status_code == 503 and ready.json()["checks"] == {"shutdown": "draining: the node is stopping"}
    # Still serving everything else while it drains.
    assert requests.get(node.url + "/healthz", timeout=5).status_code == 200
    assert requests.get(node.url + "/api/session", timeout=5).status_code == 200
    assert node.process.wait(15) == 0
    # The drain file (by default beside the node's metrics) is removed on exit: a restart starts ready.
    from pathlib import Path
    assert not list(Path(node.env["PROMETHEUS_MULTIPROC_DIR"]).glob("*.draining"))


def test_account_wide_limit_is_shared_by_nodes_and_spares_known_devices(stack) -> None:
    """Guesses spread over two nodes and many networks (X-Forwarded-For from a trusted loopback
    proxy) hit one account-wide count; the right password from another source then waits for a
    code mailed to the account; the user's own browser still signs in past it."""
    env = {"LOGINSVC_TRUSTED_PROXY_HOPS": "1", "LOGINSVC_ACCOUNT_FAILURE_LIMIT": "5",
           "LOGINSVC_ACCOUNT_DELAY_THRESHOLD": "1000"}
    blue, green = stack("blue-1", cluster="blue", **env), stack("green-1", cluster="green", **env)
    create_user_in(blue, EMAIL, PASSWORD)
    owner = Browser(blue.url)
    assert owner.login(EMAIL, PASSWORD).status_code == 200  # this browser is now a known device
    statuses = []
    for i in range(8):
        attacker = Browser((blue.url, green.url)[i % 2])
        attacker.headers["X-Forwarded-For"] = f"2001:db8:{i:x}::1"
        statuses.append(attacker.login(EMAIL, f"guess {i}").status_code)
    assert statuses == [401] * 5 + [429] * 3
    attacker.headers["X-Forwarded-For"] = "2001:db8:ff::1"
    held = attacker.login(EMAIL, PASSWORD)  # the right password from an unknown source: a mailed code first
    assert held.status_code == 200 and held.json() == {"mfa_required": True, "methods": ["email"]}
    assert attacker.whoami() == {"authenticated": False}
    owner.headers["X-Forwarded-For"] = "2001:db8:fe::1"  # a new network, the same browser
    welcome = owner.login(EMAIL, PASSWORD, base_url=green.url)
    assert welcome.status_code == 200 and welcome.json()["failed_attempts_since_last_login"] == 9
