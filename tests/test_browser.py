"""The login page in headless Chromium against a real gunicorn node: what a person sees and does."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import create_user_in

EMAIL, PASSWORD = "dora@example.test", "a browser typed password"
def submit(driver) -> None:
    """Click the form's button and wait until the next page has replaced this one."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    button = driver.find_element(By.CSS_SELECTOR, "button[type=submit]")
    button.click()

    def replaced(_driver) -> bool:
        try:
            button.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            # chromedriver, asked while the old document is being torn down, reports the same staleness this way
            if "does not belong to the document" in str(e):
                return True
            raise
        return False

    WebDriverWait(driver, 10).until(replaced)


@pytest.mark.browser
def test_person_signs_in_sees_errors_and_signs_out(chrome, stack, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    node = stack("blue-1")
    create_user_in(node, EMAIL, PASSWORD)

    chrome.get(node.url + "/login/")
    assert chrome.title == "Sign in · Mail login"
    username = chrome.switch_to.active_element  # autofocus lands on the email field
    assert username.get_attribute("id") == "id_username"
    username.send_keys(EMAIL)
    chrome.find_element(By.ID, "id_password").send_keys("not my password")
    submit(chrome)
    alert = chrome.find_element(By.CSS_SELECTOR, "[role=alert]")
    assert alert.text == "Invalid email address or password."
    assert chrome.find_element(By.ID, "id_username").get_attribute("value") == EMAIL
    assert chrome.find_element(By.ID, "id_password").get_attribute("value") == ""

    chrome.find_element(By.ID, "id_password").send_keys(PASSWORD)
    submit(chrome)
    assert chrome.find_element(By.ID, "signed-in-as").text == EMAIL
    chrome.save_screenshot(str(tmp_path / "signed-in.png"))
    assert (tmp_path / "signed-in.png").stat().st_size > 1000

    submit(chrome)  # "Sign out"
    assert chrome.current_url == node.url + "/login/"
    chrome.get(node.url + "/api/session")
    assert '"authenticated": false' in chrome.find_element(By.TAG_NAME, "body").text


@pytest.mark.browser
def test_login_form_redirects_to_next_within_the_service(chrome, stack) -> None:
    from selenium.webdriver.common.by import By

    node = stack("blue-1")
    create_user_in(node, EMAIL, PASSWORD)
    chrome.get(node.url + "/login/?next=/api/session")
    chrome.find_element(By.ID, "id_username").send_keys(EMAIL)
    chrome.find_element(By.ID, "id_password").send_keys(PASSWORD)
    submit(chrome)
    assert chrome.current_url == node.url + "/api/session"
    assert EMAIL in chrome.find_element(By.TAG_NAME, "body").text
