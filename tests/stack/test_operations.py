"""Graceful operations on the running stack: rolling restart, scale, release — zero failed requests."""
from __future__ import annotations

import time

import requests

from tests.stack.conftest import PASSWORD, Poller, RunningStack, logged_in_browser
from tests.support import Browser


def test_rolling_restart_of_a_cluster_fails_no_request(running_stack: RunningStack) -> None:
    browser = logged_in_browser(running_stack, "blue")
    pids = {n: running_stack.status()[n]["pid"] for n in ("blue-1", "blue-2")}
    retries = running_stack.retries()
    with Poller(browser, interval=0.02) as poller:
        time.sleep(0.3)
        result = running_stack.deploy("restart", "blue")
        assert result.returncode == 0, result.stderr
        assert result.stdout.index("restarting blue-1") < result.stdout.index("restarting blue-2")
    assert poller.failures == []
    # Drained before it stopped: no request had to be replayed on another node.
    assert running_stack.retries() == retries
    rows = running_stack.status()
    assert all(rows[n]["pid"] != pids[n] and rows[n]["health"] == "healthy" for n in pids)
    assert running_stack.router()["drained"] == []   # the drains of the roll are undone


def test_scale_up_serves_within_5_s_and_scale_down_fails_no_request(running_stack: RunningStack) -> None:
    browser = logged_in_browser(running_stack, "blue")
    router_pid = running_stack.status()["router"]["pid"]
    with Poller(browser, interval=0.02) as poller:
        started = time.monotonic()
        result = running_stack.deploy("scale", "blue", "3")
        assert result.returncode == 0, result.stderr
        running_stack.wait(lambda: any(fresh_request(running_stack) == "blue/blue-3" for _ in range(8)), 5,
                           "blue-3 serving")
        assert time.monotonic() - started < 5.0 + 1.0  # the command itself plus at most a few fresh requests
        rows = running_stack.status()
        assert rows["blue-3"]["state"] == "RUNNING" and rows["blue-3"]["health"] == "healthy"
        retries = running_stack.retries()
        result = running_stack.deploy("scale", "blue", "2")
        assert result.returncode == 0, result.stderr
    assert poller.failures == []
    assert running_stack.retries() == retries               # blue-3 was drained before it went away
    assert running_stack.status()["router"]["pid"] == router_pid   # picked up without a router restart
    assert "blue-3" not in running_stack.status()
    assert [n["name"] for n in running_stack.router()["clusters"]["blue"]["nodes"]] == ["blue-1", "blue-2"]


def fresh_request(stack: RunningStack) -> str:
    """What a brand-new browser is served by: blue is stable, so most land there, spread over its nodes."""
    from tests.support import Browser
    # not /healthz: the router answers the health paths itself (docs/router.md)
    return Browser(stack.base).call("GET", "/api/session").headers.get("X-Served-By", "")


def test_release_rolls_one_cluster_to_a_new_tag_while_the_other_serves(running_stack: RunningStack) -> None:
    browser = logged_in_browser(running_stack, "green")
    retries = running_stack.retries()
    with Poller(browser, interval=0.02) as poller:
        time.sleep(0.3)
        result = running_stack.deploy("release", "green", "v2.0.1")
        assert result.returncode == 0, result.stderr
    assert poller.failures == []
    assert running_stack.retries() == retries
    rows = running_stack.status()
    assert rows["green-1"]["release"] == rows["green-2"]["release"] == "v2.0.1"
    assert rows["blue-1"]["release"] == "dev"
    # The new tag is what the green nodes now report; blue's nodes were not restarted.
    response = browser.call("GET", "/api/session")
    assert response.headers["X-Served-By"].startswith("green/") and response.headers["X-Release"] == "v2.0.1"


def test_bad_targets_and_arguments_get_one_message_and_exit_2(running_stack: RunningStack) -> None:
    for args, message in (
        (("kill", "purple"), "unknown target 'purple'"),
        (("restart", "blue-9"), "unknown target 'blue-9'"),
        (("scale", "purple", "2"), "unknown cluster 'purple'"),
        (("scale", "blue", "0"), "N: must be between 1 and"),
        (("scale", "blue", "two"), "N: expected a whole number"),
        (("release", "green", "v2 beta"), "VERSION:"),
        (("frobnicate",), "invalid choice"),
        (("scale", "blue"), "required"),
    ):
        result = running_stack.deploy(*args)
        assert result.returncode == 2, (args, result)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_tester_link_pins_a_signed_in_browser_to_a_login_node_of_its_cluster(running_stack: RunningStack) -> None:
    """Through the real router to real login nodes: the link points at the issuer (make up's public origin)."""
    share = running_stack.router()["percent"]
    token = (running_stack.var_dir / "canary-admin-token").read_text().strip()
    made = requests.post(running_stack.admin + "/api/tester-links", json={"cluster": "green", "ttl": "10m"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert made.status_code == 201, made.text
    url = made.json()["url"]
    assert url.startswith(running_stack.base + "/_canary/tester/"), url
    running_stack.router("POST", "/api/ramp", {"percent": 0})
    try:
        browser = Browser(running_stack.base)
        page = browser.call("GET", url.removeprefix(running_stack.base))
        assert page.status_code == 200 and "<form" in page.text, page.text
        opened = browser.call("POST", url.removeprefix(running_stack.base))
        assert opened.status_code == 303 and browser.cookies["canary_pin"].startswith("T."), opened.text
        assert browser.login("demo@example.test", PASSWORD).status_code == 200
        for _ in range(5):
            answer = browser.call("GET", "/api/session")
            assert answer.status_code == 200 and answer.json()["authenticated"], answer.text
            assert answer.headers["X-Served-By"].startswith("green/"), answer.headers
    finally:
        running_stack.router("POST", "/api/ramp", {"percent": share})
        requests.delete(running_stack.admin + "/api/tester-links", headers={"Authorization": f"Bearer {token}"},
                        timeout=5)
