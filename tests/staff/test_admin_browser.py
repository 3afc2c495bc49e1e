"""The admin in headless Chromium against a real node: a staff member signs in on the service's page with an
app code, finds an account and deactivates it; the admin's style sheets and scripts load under its
Content-Security-Policy (no violation in the console)."""
from __future__ import annotations

import pytest

from deploy.node import manage
from tests.mfa.conftest import enrol_by_shell
from tests.test_browser import submit

EMAIL, PASSWORD = "fay@example.test", "a long and careful password"
STAFF, STAFF_PASSWORD = "ops.fay@example.test", "the staff member's own long password"


@pytest.mark.browser
def test_staff_find_and_deactivate_an_account_in_chromium(chrome, stack) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    node = stack("blue-1")
    manage(dict(node.env, LOGINSVC_NEW_PASSWORD=PASSWORD), "create_user", EMAIL)  # an end user, not staff
    manage(dict(node.env, LOGINSVC_NEW_PASSWORD=STAFF_PASSWORD), "create_user", STAFF, "--staff")
    app = enrol_by_shell(node.env, STAFF)

    chrome.get(node.url + "/admin/")
    assert "/login/" in chrome.current_url  # the service's own sign-in page, not the admin's form
    chrome.find_element(By.ID, "id_username").send_keys(STAFF)
    chrome.find_element(By.ID, "id_password").send_keys(STAFF_PASSWORD)
    submit(chrome)
    chrome.find_element(By.ID, "code").send_keys(app.now())
    submit(chrome)
    assert chrome.current_url == node.url + "/admin/"

    chrome.get(node.url + "/admin/accounts/user/?q=fay%40")
    header = chrome.find_element(By.ID, "header")
    assert header.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"  # the admin's style sheet
    chrome.find_element(By.ID, "action-toggle").click()  # "select all": the admin's script
    rows = chrome.find_elements(By.CSS_SELECTOR, "input.action-select")
    assert len(rows) == 2 and all(r.is_selected() for r in rows)  # the user and the staff member ("fay@")
    chrome.find_element(By.ID, "action-toggle").click()  # and none again
    assert not any(r.is_selected() for r in rows)
    user_row = [r for r in chrome.find_elements(By.CSS_SELECTOR, "#result_list tbody tr") if EMAIL in r.text][0]
    user_row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    Select(chrome.find_element(By.NAME, "action")).select_by_value("deactivate")
    chrome.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    assert "Deactivated: 1 account(s)." in chrome.find_element(By.CSS_SELECTOR, "ul.messagelist").text
    violations = [e["message"] for e in chrome.get_log("browser") if "Content Security Policy" in e["message"]]
    assert violations == []
