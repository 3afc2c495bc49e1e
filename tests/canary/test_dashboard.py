"""The ops dashboard on the admin listener, against a real router and real demo backends: the login form and its
HttpOnly SameSite session cookie, CSRF and origin checks on every control, the security headers; sessions ended
server-side (sign-out, sign-out-all, token rotation) on every router sharing the state (file or real Redis);
the per-address back-off for wrong tokens and its log line; then headless Chromium signs in, watches the charts
move under traffic, drives a ramp, a rollback and a plan with a mirror step through the controls (confirming
each), and saves screenshots."""
from __future__ import annotations

import asyncio
import http.client
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from canary.admin.ops_auth import AdminError, OpsAuth, SignInThrottle
from canary.config.settings import Config
from canary.discovery.state import RedisStore
from tests.plugin import free_port
from tests.support import wait_for
from tests.canary.conftest import FAST, TOKEN, toml_config


@pytest.fixture
def green(backends: Any) -> list[Any]:
    return backends("green", 1)


@pytest.fixture
def router(backends: Any, router_factory: Any, green: list[Any], tmp_path: Path) -> Any:
    return router_factory(config=toml_config({"blue": backends("blue", 2), "green": green}, **FAST),
                          env={"LOGINSVC_VAR_DIR": str(tmp_path / "var")})


def signed_in(router: Any) -> tuple[requests.Session, str]:
    """A session signed in through the form, and the CSRF token its dashboard page carries."""
    s = requests.Session()
    r = s.post(router.admin_url + "/login", data={"token": TOKEN}, allow_redirects=False, timeout=5)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    page = s.get(router.admin_url + "/", timeout=5).text
    csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return s, csrf


def test_the_login_form_sets_an_httponly_strict_cookie_and_a_wrong_token_gets_none(router: Any) -> None:
    first = requests.get(router.admin_url + "/", timeout=5)
    assert first.status_code == 200 and 'name="token"' in first.text and "csrf-token" not in first.text
    assert "script-src 'self'" in first.headers["Content-Security-Policy"]
    assert first.headers["X-Frame-Options"] == "DENY"
    wrong = requests.post(router.admin_url + "/login", data={"token": "not-the-token-at-all"}, allow_redirects=False,
                          timeout=5)
    assert wrong.status_code == 401 and "That is not the admin token." in wrong.text and "Set-Cookie" not in wrong.headers
    good = requests.post(router.admin_url + "/login", data={"token": TOKEN}, allow_redirects=False, timeout=5)
    cookie = good.headers["Set-Cookie"]
    assert cookie.startswith("canary_ops=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    session, csrf = signed_in(router)
    assert len(csrf) == 64 and session.get(router.admin_url + "/api/status", timeout=5).json()["percent"] == 0
    for path in ("/static/dashboard.js", "/static/uPlot.iife.min.js", "/static/uPlot.min.css"):
        assert requests.get(router.admin_url + path, timeout=5).status_code == 200, path
    for path in ("/static/admin.py", "/static/vendor/uPlot.LICENSE", "/static/index.html"):   # a list, not a folder
        assert requests.get(router.admin_url + path, timeout=5).status_code == 404, path


def test_every_control_needs_the_csrf_token_and_the_dashboards_origin(router: Any) -> None:
    session, csrf = signed_in(router)
    url = router.admin_url + "/api/ramp"
    assert session.post(url, json={"percent": 30}, timeout=5).status_code == 403                 # no token
    assert session.post(url, json={"percent": 30}, headers={"X-CSRF-Token": "0" * 64}, timeout=5).status_code == 403
    assert session.post(url, json={"percent": 30}, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
                        timeout=5).status_code == 403
    assert router.status()["percent"] == 0                                                       # nothing changed
    ok = session.post(url, json={"percent": 30}, headers={"X-CSRF-Token": csrf, "Origin": router.admin_url}, timeout=5)
    assert ok.status_code == 200 and ok.json()["percent"] == 30
    other = requests.Session()
    other.cookies.set("canary_ops", "9999999999.forged")
    assert other.get(router.admin_url + "/api/status", timeout=5).status_code == 401
    out = session.post(router.admin_url + "/logout", headers={"Origin": router.admin_url}, allow_redirects=False,
                       timeout=5)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["Set-Cookie"]


def replay(router: Any, cookie: str) -> int:
    """The status of GET /api/status with nothing but a copied session cookie."""
    return requests.get(router.admin_url + "/api/status", headers={"Cookie": f"canary_ops={cookie}"},
                        timeout=5).status_code


@pytest.fixture(params=["file", "redis"])
def two_routers(request: Any, backends: Any, router_factory: Any, tmp_path: Path) -> list[Any]:
    """Two router processes on one shared state: the same state file, or the same real Redis."""
    cfg = toml_config({"blue": backends("blue", 1), "green": backends("green", 1)}, access_log=False)
    shared = (["--redis", request.getfixturevalue("redis_url")] if request.param == "redis"
              else ["--state", str(tmp_path / "shared-state.json")])
    return [router_factory(args=shared, config=cfg) for _ in range(2)]


def test_asvs_3_3_1_logout_ends_the_session_on_every_router_sharing_the_state(two_routers: list[Any]) -> None:
    a, b = two_routers
    session, _ = signed_in(a)
    cookie = session.cookies["canary_ops"]
    assert replay(a, cookie) == 200 and replay(b, cookie) == 200       # one session, good on both routers
    out = session.post(a.admin_url + "/logout", headers={"Origin": a.admin_url}, allow_redirects=False, timeout=5)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
    assert replay(a, cookie) == 401 and replay(b, cookie) == 401       # the copied cookie is refused everywhere
    page = requests.get(b.admin_url + "/", headers={"Cookie": f"canary_ops={cookie}"}, timeout=5).text
    assert 'name="token"' in page and "csrf-token" not in page
    assert replay(a, signed_in(b)[0].cookies["canary_ops"]) == 200     # signing in again works


def test_asvs_3_3_4_sign_out_all_ends_every_session_on_every_router(two_routers: list[Any]) -> None:
    a, b = two_routers
    (first, _), (second, csrf) = signed_in(a), signed_in(b)
    cookies = [first.cookies["canary_ops"], second.cookies["canary_ops"]]
    url = b.admin_url + "/api/sign-out-all"
    assert second.post(url, timeout=5).status_code == 403                               # no CSRF token
    assert {replay(r, c) for r in two_routers for c in cookies} == {200}
    done = second.post(url, headers={"X-CSRF-Token": csrf, "Origin": b.admin_url}, timeout=5)
    assert done.status_code == 200, done.text
    assert {replay(r, c) for r in two_routers for c in cookies} == {401}
    assert a.status()["stable"] == "blue"                                               # the bearer token works
    third = signed_in(a)[0].cookies["canary_ops"]
    assert a.api("POST", "/api/sign-out-all") == {"signed_out": "every ops dashboard session"}   # automation
    assert replay(b, third) == 401


def test_asvs_3_3_3_rotating_the_admin_token_file_ends_every_session(backends: Any, router_factory: Any,
                                                                    tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    router = router_factory(config=toml_config({"blue": backends("blue", 1), "green": backends("green", 1)},
                                               access_log=False),
                            env={"CANARY_ADMIN_TOKEN": "", "CANARY_ADMIN_TOKEN_FILE": str(token_file)})
    cookie = signed_in(router)[0].cookies["canary_ops"]
    assert replay(router, cookie) == 200

    def rotate(value: str) -> None:    # as a secret manager does: a new file renamed over the old one
        staged = tmp_path / ".admin-token.new"
        staged.write_text(value + "\n")
        os.replace(staged, token_file)
    new = "rotated-admin-token-" + secrets.token_hex(8)
    rotate(new)
    assert replay(router, cookie) == 401
    with pytest.raises(requests.HTTPError):
        requests.get(router.admin_url + "/api/status", headers={"Authorization": f"Bearer {TOKEN}"},
                     timeout=5).raise_for_status()
    assert router.api("GET", "/api/status", token=new)["stable"] == "blue"
    rotate("too-short")                                   # refused like a short token at start: the new one stays
    assert router.api("GET", "/api/status", token=new)["stable"] == "blue"
    log = router.stdout.read_text()
    assert "admin token rotated" in log and "shorter than 16 characters" in log
    assert new not in log and "too-short" not in log


def sign_in_from(router: Any, source: str, token: str, forwarded: str | None = None,
                 bearer: bool = False) -> tuple[int, dict[str, str]]:
    """(status, lower-cased headers) of a sign-in with `token` from the local address `source`."""
    conn = http.client.HTTPConnection("127.0.0.1", router.admin_port, timeout=5, source_address=(source, 0))
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    try:
        if bearer:
            conn.request("GET", "/api/status", headers={"Authorization": f"Bearer {token}", **headers})
        else:
            conn.request("POST", "/login", body=f"token={token}",
                         headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
        answer = conn.getresponse()
        answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}
    finally:
        conn.close()


def test_asvs_2_2_1_7_2_1_wrong_tokens_from_one_address_are_throttled_and_logged_with_it_not_another(
        backends: Any, router_factory: Any) -> None:
    # 127.0.0.1 is the one trusted proxy (one hop): its X-Forwarded-For names the client; 127.0.0.2's is ignored.
    router = router_factory(config=toml_config({"blue": backends("blue", 1), "green": backends("green", 1)},
                                               access_log=False, trusted_hops=1, trusted_proxies=["127.0.0.1/32"]))
    tried = [f"wrong-token-{secrets.token_hex(6)}" for _ in range(5)]
    for i, token in enumerate(tried):       # a new X-Forwarded-For each time does not make a new client
        assert sign_in_from(router, "127.0.0.2", token, forwarded=f"198.51.100.{i}")[0] == 401
    status, headers = sign_in_from(router, "127.0.0.2", TOKEN)
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 2      # even the right token waits
    assert sign_in_from(router, "127.0.0.2", TOKEN, bearer=True)[0] == 429
    assert sign_in_from(router, "127.0.0.1", TOKEN, forwarded="203.0.113.9")[0] == 303      # another address
    assert sign_in_from(router, "127.0.0.1", "wrong-from-behind-the-proxy", forwarded="203.0.113.9")[0] == 401
    log = router.stdout.read_text()
    refused = [line for line in log.splitlines() if "sign-in refused" in line]
    assert len(refused) == 6 and all("from 127.0.0.2:" in line for line in refused[:5]), refused
    assert "locked 2 s" in refused[4] and "from 203.0.113.9:" in refused[5]
    assert "198.51.100." not in log and not [t for t in tried + ["wrong-from-behind-the-proxy"] if t in log]


def test_the_back_off_doubles_per_failure_is_capped_forgotten_and_bounded_in_memory() -> None:
    throttle, now = SignInThrottle(capacity=3), 1000.0
    assert [throttle.failed("192.0.2.1", now)[1] for _ in range(8)] == [0, 0, 0, 0, 2, 4, 8, 16]
    assert throttle.wait("192.0.2.1", now + 10) == 6 and throttle.wait("192.0.2.2", now) == 0
    assert max(throttle.failed("192.0.2.1", now)[1] for _ in range(20)) == 900
    assert throttle.wait("192.0.2.1", now + 901) == 0                      # forgotten 15 min after the last
    for _ in range(5):
        throttle.failed("2001:db8::1", now)
    assert throttle.wait("2001:db8::ffff", now) == 2                       # one /64, one client
    for address in ("192.0.2.7", "192.0.2.8", "192.0.2.9"):
        throttle.failed(address, now)
    assert throttle.wait("2001:db8::1", now) == 0 and len(throttle._failures) == 3


@dataclass
class Host:
    """What the admin's authentication reads of a router process (ops_auth.AuthHost)."""

    cfg: Config
    store: RedisStore


def test_no_cookie_is_trusted_while_the_shared_record_is_unreachable() -> None:
    """Fail closed: with the Redis of the shared state down, a good cookie gets a 503, never a pass."""
    host = Host(Config(clusters=[]), RedisStore(f"redis://127.0.0.1:{free_port()}"))    # nothing listens there
    auth = OpsAuth(host, TOKEN)
    cookie = auth.sessions.issue(time.time(), "0123456789abcdef")

    async def ask() -> int:
        try:
            await auth.authorized("GET", {b"cookie": f"canary_ops={cookie}".encode()}, "127.0.0.1")
        except AdminError as e:
            return e.status
        finally:
            await host.store.close()
        return 200
    assert asyncio.run(ask()) == 503


class Traffic:
    def __init__(self, port: int) -> None:
        self.port, self.stop = port, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        s = requests.Session()
        while not self.stop.is_set():      # new browsers: no pin cookie kept, so each follows the share
            s.cookies.clear()
            try:
                s.get(f"http://127.0.0.1:{self.port}/", timeout=5)
            except requests.RequestException:
                pass
            time.sleep(0.01)


@pytest.fixture
def traffic(router: Any) -> Iterator[Traffic]:
    t = Traffic(router.port)
    t.thread.start()
    yield t
    t.stop.set()
    t.thread.join(10)


def points(driver: Any) -> int:
    return driver.execute_script("const c = window.canaryDashboard.charts.rate; return c ? c.data[0].length : 0;")


def confirm(driver: Any) -> str:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
    alert = WebDriverWait(driver, 5).until(expected_conditions.alert_is_present())
    text = alert.text
    alert.accept()
    return text


@pytest.mark.browser
def test_chromium_signs_in_watches_the_charts_move_and_drives_a_ramp_and_a_rollback(
        chrome: Any, router: Any, green: list[Any], traffic: Traffic, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    shots = tmp_path / "screenshots"
    shots.mkdir()
    chrome.set_window_size(1280, 1500)
    chrome.get(router.admin_url + "/")
    chrome.find_element(By.ID, "token").send_keys(TOKEN)
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: chrome.execute_script("return !!(window.canaryDashboard && window.canaryDashboard.charts.rate)"),
             10, "the dashboard's charts")
    first = points(chrome)
    wait_for(lambda: points(chrome) >= first + 3, 10, "the charts gaining points under traffic")
    assert "blue-1" in chrome.find_element(By.ID, "nodes-blue").text
    assert chrome.find_element(By.ID, "summary").text.startswith("stable blue · canary green · share 0%")
    chrome.save_screenshot(str(shots / "1-signed-in.png"))

    chrome.find_element(By.ID, "ramp-percent").send_keys("40")
    chrome.find_element(By.ID, "ramp").click()
    assert confirm(chrome) == "Ramp the canary to 40% of new sessions?"
    wait_for(lambda: router.status()["percent"] == 40, 5, "the ramp through the dashboard")
    wait_for(lambda: "share 40%" in chrome.find_element(By.ID, "summary").text, 5, "the new share on the page")
    wait_for(lambda: chrome.execute_script("return window.canaryDashboard.charts.rate.data[2].some(v => v > 0)"),
             10, "green's traffic on the chart")          # series 2: the second cluster, green
    chrome.save_screenshot(str(shots / "2-ramped-to-40.png"))

    chrome.find_element(By.ID, "rollback").click()
    assert confirm(chrome) == "Roll the canary back to 0% of new sessions?"
    wait_for(lambda: router.status()["percent"] == 0, 5, "the rollback through the dashboard")
    wait_for(lambda: "rollback: green" in chrome.find_element(By.ID, "events").text, 10, "the rollback alert listed")

    steps = chrome.find_element(By.ID, "plan-steps")         # a plan whose first step mirrors, typed in the form
    steps.clear()
    steps.send_keys("mirror:25, 12,20,50,100")
    chrome.find_element(By.ID, "plan-start").click()
    assert confirm(chrome) == "Start a ramp plan mirror:25 → 12% → 20% → 50% → 100%, holding each step 300 s?"
    wait_for(lambda: (router.status()["plan"] or {}).get("phase") == "mirror", 5, "the plan's mirror step")
    status = router.status()
    assert status["percent"] == 0 and status["plan"]["steps"] == [12, 20, 50, 100] and status["plan"]["mirror"] == 25
    assert status["mirror"]["cluster"] == "green" and status["mirror"]["percent"] == 25
    wait_for(lambda: "mirror step (25% copied) of 12,20,50,100" in chrome.find_element(By.ID, "plan").text, 5,
             "the mirror step on the page")
    chrome.find_element(By.ID, "plan-abort").click()
    assert confirm(chrome) == "Abort the ramp plan? (share back to 0%)"
    wait_for(lambda: router.status()["plan"]["status"] == "aborted" and router.status()["mirror"] is None, 5,
             "the plan and its copies ended from the dashboard")

    for backend in green:                                   # a failover: the dashboard is the router's, it stays
        backend.kill()
    wait_for(lambda: "green (canary) DOWN" in chrome.find_element(By.ID, "clusters").text, 10, "green shown down")
    updates = chrome.execute_script("return window.canaryDashboard.updates")
    wait_for(lambda: chrome.execute_script("return window.canaryDashboard.updates") > updates + 2, 10,
             "the dashboard still updating during the failover")
    chrome.save_screenshot(str(shots / "3-failover.png"))

    chrome.find_element(By.ID, "drain-blue-blue-2").click()
    chrome.switch_to.alert.dismiss()                       # asked, and refused: nothing happens
    time.sleep(0.5)
    assert router.status()["drained"] == [] and "cancelled" in chrome.find_element(By.ID, "message").text
    chrome.save_screenshot(str(shots / "4-drain-refused.png"))

    chrome.find_element(By.ID, "sign-out-all").click()     # ends this session too: the next poll shows the form
    assert confirm(chrome) == "Sign out every ops dashboard session, on every router (this one too)?"
    wait_for(lambda: chrome.find_elements(By.ID, "token"), 10, "the sign-in form after signing everyone out")
    assert all((shots / name).stat().st_size > 10_000 for name in ("1-signed-in.png", "2-ramped-to-40.png",
                                                                   "3-failover.png", "4-drain-refused.png"))
