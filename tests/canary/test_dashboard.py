"""The ops dashboard on the admin listener, against a real router and real demo backends: the login form and its
HttpOnly SameSite session cookie, CSRF and origin checks on every control, the security headers; then headless
Chromium signs in, watches the charts move under traffic, drives a ramp and a rollback through the controls
(confirming each), and saves screenshots."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

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
    assert all((shots / name).stat().st_size > 10_000 for name in ("1-signed-in.png", "2-ramped-to-40.png",
                                                                   "3-failover.png", "4-drain-refused.png"))
