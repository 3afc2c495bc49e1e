"""Single sign-on as a person clicks it, in headless Chromium, on the real `make up` stack with the demo products:
webmail → sign in with demo2's password and authenticator code → admin portal (second factor required) with
nothing asked → sign out from quarantine → signed out everywhere; demo@, with a password alone, is sent from the
admin portal to set up a second factor; then demo@ forgets the password and recovers it with the code the
stack's own SMTP server stored in var/mail/."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from tests.plugin import free_port
from tests.stack.conftest import PASSWORD, RunningStack, start_stack
from tests.test_browser import submit

EMAIL = "demo2@example.test"                # `make up` gives it an authenticator app (var/demo2-totp.txt)
PASSWORD_ONLY = "demo@example.test"
SECRET = "demo-client-secret-for-the-browser-test-0123456789"
BACKCHANNEL_SECONDS = 10.0     # the outbox is kicked on commit; a few seconds at most on a loaded machine


@pytest.fixture
def demo_stack(tmp_path_factory: pytest.TempPathFactory,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningStack, str]]:
    """`make up` with DEMO_CLIENT_SECRET: the stack registers and runs the three demo products."""
    monkeypatch.setenv("DEMO_CLIENT_SECRET", SECRET)
    demo = f"127.0.0.1:{free_port()}"
    stack = start_stack(tmp_path_factory.mktemp("demo"), "--demo-listen", demo)  # short: unix sockets in var/
    try:
        yield stack, f"http://{demo}"
    finally:
        stack.stop()


def status(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "status").text


def click(driver, element_id: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, element_id).click()


def submit_or_explain(driver) -> None:
    """Submit the page's form; when the browser does not leave the page, fail with what its console says
    (a Content-Security-Policy block of the redirect chain shows only there)."""
    from selenium.common.exceptions import TimeoutException, WebDriverException

    try:
        submit(driver)
    except TimeoutException:
        try:
            console = [entry["message"][-400:] for entry in driver.get_log("browser")]
        except WebDriverException as exc:
            console = [f"(no console log: {exc.msg})"]
        raise AssertionError(f"the form did not leave {driver.current_url[:120]}; console: {console}") from None


def wait_status(driver, url: str, expected: str, timeout: float) -> float:
    """Reload `url` until the product says `expected`; the seconds it took."""
    started = time.monotonic()
    while True:
        driver.get(url)
        if status(driver) == expected:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"{url}: {status(driver)!r}, not {expected!r} in {timeout}s"
        time.sleep(0.5)


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_sign_in_once_sign_out_everywhere(chrome, demo_stack, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    stack, demo = demo_stack
    shots = tmp_path / "screenshots"
    shots.mkdir()

    chrome.get(demo + "/webmail/")
    assert chrome.find_element(By.ID, "product").text == "Webmail"
    assert status(chrome) == "not signed in"
    click(chrome, "sign-in")
    # The login service's own page, through the router (the issuer), not the product's.
    assert chrome.current_url.startswith(stack.base + "/login/"), chrome.current_url
    assert chrome.title == "Sign in · Mail login"
    chrome.find_element(By.ID, "id_username").send_keys(EMAIL)
    chrome.find_element(By.ID, "id_password").send_keys(PASSWORD)
    submit_or_explain(chrome)
    assert chrome.current_url.startswith(stack.base + "/login/mfa/"), chrome.current_url   # the second step
    code = pyotp.parse_uri((stack.var_dir / "demo2-totp.txt").read_text().strip()).now()
    chrome.find_element(By.ID, "code").send_keys(code)
    submit_or_explain(chrome)
    assert chrome.current_url == demo + "/webmail/", chrome.current_url
    assert status(chrome) == f"signed in as {EMAIL}"
    chrome.save_screenshot(str(shots / "1-webmail-signed-in.png"))

    click(chrome, "link-admin-portal")
    assert status(chrome) == "not signed in"   # its own product session, not yet started
    click(chrome, "sign-in")                   # the provider answers at once: the central session, two factors
    assert chrome.current_url == demo + "/admin-portal/", chrome.current_url
    assert status(chrome) == f"signed in as {EMAIL}"
    assert not chrome.find_elements(By.ID, "id_password")
    chrome.save_screenshot(str(shots / "2-admin-portal-signed-in.png"))

    click(chrome, "link-quarantine")
    click(chrome, "sign-in")
    assert status(chrome) == f"signed in as {EMAIL}"
    signed_out_at = time.monotonic()
    submit(chrome)                             # "Sign out": the product, then the provider's end-session endpoint
    assert chrome.current_url.startswith(demo + "/quarantine/"), chrome.current_url
    assert status(chrome) == "not signed in"
    assert chrome.find_element(By.ID, "signed-out").text == "You have signed out."

    # Back-channel logout: the provider told the two other products; their pages say so.
    webmail_seconds = wait_status(chrome, demo + "/webmail/", "not signed in", BACKCHANNEL_SECONDS)
    wait_status(chrome, demo + "/admin-portal/", "not signed in", BACKCHANNEL_SECONDS)
    print(f"\nback-channel: webmail signed out {time.monotonic() - signed_out_at:.2f}s after the click "
          f"({webmail_seconds:.2f}s of polling)")
    chrome.save_screenshot(str(shots / "3-admin-portal-signed-out.png"))
    # The central session is gone too: signing in again asks for the password.
    click(chrome, "sign-in")
    assert chrome.current_url.startswith(stack.base + "/login/"), chrome.current_url
    final = shots / "4-password-asked-again.png"
    chrome.save_screenshot(str(final))
    assert final.stat().st_size > 1000
    # The admin portal requires a second factor: an account with a password alone is asked to set one up.
    chrome.find_element(By.ID, "id_username").send_keys(PASSWORD_ONLY)
    chrome.find_element(By.ID, "id_password").send_keys(PASSWORD)
    submit_or_explain(chrome)
    assert chrome.current_url.startswith(stack.base + "/account/mfa/"), chrome.current_url
    assert "required=1" in chrome.current_url
    print(f"screenshots: {shots} (last: {final})")
    recover_by_mail(chrome, stack, PASSWORD_ONLY, shots)


def newest_code(maildir: Path, timeout: float = 15) -> str:
    """The 8-digit code of the newest recovery mail the stack's SMTP server stored (var/mail/new/)."""
    import email
    import re
    from email import policy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted((maildir / "new").glob("*"), key=lambda p: p.stat().st_mtime, reverse=True):
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            if "recovery code" in str(message["Subject"]):
                return re.findall(r"^ +(\d{8})\s*$", message.get_body(("plain",)).get_content(), re.MULTILINE)[0]
        time.sleep(0.2)
    raise AssertionError(f"no recovery mail in {maildir} within {timeout}s")


def recover_by_mail(chrome, stack: RunningStack, address: str, shots: Path) -> None:
    """A forgotten password, through the router: ask, read the code from the stack's Maildir, set a new
    password, sign in with it."""
    from selenium.webdriver.common.by import By

    chrome.delete_all_cookies()
    chrome.get(stack.base + "/login/")
    click(chrome, "forgot-password")
    chrome.find_element(By.ID, "recover-email").send_keys(address)
    submit_or_explain(chrome)
    assert chrome.find_element(By.ID, "recover-notice").text.startswith("If an account has this address")
    chrome.find_element(By.ID, "recover-code").send_keys(newest_code(stack.var_dir / "mail"))
    chrome.find_element(By.ID, "recover-new-password").send_keys("a recovered passphrase for demo")
    submit_or_explain(chrome)
    assert chrome.find_element(By.ID, "recover-done").is_displayed()
    chrome.save_screenshot(str(shots / "5-recovered.png"))
    click(chrome, "sign-in")
    chrome.find_element(By.ID, "id_username").send_keys(address)
    chrome.find_element(By.ID, "id_password").send_keys("a recovered passphrase for demo")
    submit_or_explain(chrome)
    assert chrome.current_url.startswith(stack.base + "/"), chrome.current_url
    assert not chrome.find_elements(By.ID, "login-error")
