"""Passkeys in headless Chromium with a virtual authenticator, through the real router and real gunicorn
nodes of both clusters: what a person does with a passkey on the pages, and what the service refuses.

The pages are opened as http://localhost:<router port> (the nodes' issuer is http://127.0.0.1:<router
port>, whose RP ID is "localhost": browsers refuse an IP address as RP ID).

Chromium's virtual authenticator answers a conditional-mediation request (the login page's passkey
autofill) by itself when the person's "touch" is simulated: the login page would sign in on load,
before any click. So the authenticator is untouched (`Authenticator.touched()` is off) except while
a test means a ceremony to complete: the autofill request then waits, as it does for a person who
does not pick the passkey from the email field's list, and the button has to abort it first.
"""
from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from canary.dataplane.pin import PinSigner
from deploy.node import free_port
from tests import plugin
from tests.canary.conftest import PIN_SECRET, Router
from tests.sso.test_e2e_authlib import BLUE_PIN, router_config
from tests.support import LoginNode, fresh_database, manage, node_env

PASSWORD = "a password typed before the passkey"
WAIT = 15  # seconds for any page or ceremony to finish: a hung node fails the test, never hangs it

pytestmark = pytest.mark.browser


@dataclass
class Site:
    origin: str            # what the browser opens: http://localhost:<router port>
    blue: LoginNode
    green: LoginNode
    router: Router


def all_available(status: dict[str, Any]) -> bool:
    return all(c["available"] for c in status["clusters"].values())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """blue-1 and green-1 (one database, the suite's Redis) behind a router whose origin is the issuer;
    shared by the tests of this file (each has its own account and browser)."""
    scratch = tmp_path_factory.mktemp("passkeys-browser")
    (scratch / "var").mkdir()
    port = free_port()
    env = node_env(scratch / "var", plugin.REDIS.url, LOGINSVC_OIDC_ISSUER=f"http://127.0.0.1:{port}",
                   LOGINSVC_TRUSTED_PROXY_HOPS="1")
    fresh_database(env)
    nodes: list[LoginNode] = []
    router = Router(scratch, ["--config", str(scratch / "router.toml")], {})
    router.port = port  # chosen before the nodes: their issuer is this origin
    try:
        for cluster in ("blue", "green"):
            nodes.append(LoginNode(env, cluster, f"{cluster}-1", scratch))
            nodes[-1].start()
        (scratch / "router.toml").write_text(router_config(*nodes))
        router.start()
        router.wait_status(all_available, timeout=10)
        yield Site(f"http://localhost:{port}", nodes[0], nodes[1], router)
    finally:
        router.stop(signal.SIGKILL)
        for node in nodes:
            node.stop()


def create_account(site: Site, email: str) -> None:
    made = manage(site.blue.env, "shell", "-v", "0", "-c", "from loginsvc.accounts.models import User; "
                  f"User.objects.create_user({email!r}, {PASSWORD!r})", check=False)
    assert made.returncode == 0, made.stderr


class Authenticator:
    """Chromium's virtual authenticator (CTAP2, built in, discoverable credentials, user verification
    that succeeds): the person's device. It answers a ceremony only while `touched()`."""

    def __init__(self, driver: Any) -> None:
        from selenium.webdriver.common.virtual_authenticator import VirtualAuthenticatorOptions as Options

        driver.add_virtual_authenticator(Options(
            protocol=Options.Protocol.CTAP2, transport=Options.Transport.INTERNAL, has_resident_key=True,
            has_user_verification=True, is_user_verified=True))
        self.driver = driver
        self._presence(False)

    def _presence(self, on: bool) -> None:
        # chromedriver's authenticator id is DevTools' own: WebAuthn.* commands take it as is
        self.driver.execute_cdp_cmd("WebAuthn.setAutomaticPresenceSimulation",
                                    {"authenticatorId": self.driver.virtual_authenticator_id, "enabled": on})

    @contextmanager
    def touched(self) -> Iterator[None]:
        self._presence(True)
        try:
            yield
        finally:
            self._presence(False)

    def credentials(self) -> list[Any]:
        return self.driver.get_credentials()

    def replace_sign_count(self, sign_count: int) -> None:
        """The one credential again, its counter set to `sign_count` (a copy of the key made earlier)."""
        from selenium.webdriver.common.virtual_authenticator import Credential

        [credential] = self.credentials()
        self.driver.remove_all_credentials()
        self.driver.add_credential(Credential.from_dict(dict(credential.to_dict(), signCount=sign_count)))


@pytest.fixture
def browser(chrome: Any) -> Any:
    chrome.set_script_timeout(WAIT)
    return chrome


# The page script's own conversions (scripts/passkeys.js), for ceremonies the tests drive step by step.
JS = """
const decode = (text) => {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4)), (c) => c.charCodeAt(0)).buffer;
};
const encode = (buffer) => {
  let text = "";
  new Uint8Array(buffer).forEach((byte) => { text += String.fromCharCode(byte); });
  return btoa(text).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
};
const call = async (method, path, body) => {
  const token = (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";
  const response = await fetch(path, {
    method, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-CSRFToken": token },
  });
  return { status: response.status, servedBy: response.headers.get("X-Served-By"), text: await response.text() };
};
const done = arguments[arguments.length - 1];
"""


def fetch(driver: Any, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """`method path` from the page (its cookies, its CSRF token): status, X-Served-By, and the JSON."""
    got = driver.execute_async_script(JS + "call(arguments[0], arguments[1], arguments[2] ?? undefined)"
                                      ".then(done, (e) => done({error: String(e)}));", method, path, body)
    assert "error" not in got, got
    got["json"] = json.loads(got.pop("text"))
    return got


def session(driver: Any) -> dict[str, Any]:
    answer = fetch(driver, "GET", "/api/session")
    assert answer["status"] == 200, answer
    return answer["json"]


def wait(driver: Any, condition: Any, what: str) -> Any:
    """`condition` polled until true; an element gone with the page that was replaced means "not yet"."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    waiting = WebDriverWait(driver, WAIT, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    return waiting.until(condition, f"{what}: not within {WAIT}s (at {driver.current_url})")


def wait_signed_in(driver: Any, site: Site, email: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait(driver, ec.url_to_be(site.origin + "/"), "the home page")
    assert driver.find_element(By.ID, "signed-in-as").text == email


def sign_in_with_password(driver: Any, site: Site, email: str) -> None:
    """The login form (its autofill request for a passkey waits meanwhile: the authenticator is untouched)."""
    from selenium.webdriver.common.by import By

    from tests.test_browser import submit

    driver.get(site.origin + "/login/")
    driver.find_element(By.ID, "id_username").send_keys(email)
    driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
    submit(driver)


def register_passkey(driver: Any, authenticator: Authenticator, site: Site, name: str) -> list[str]:
    """Add a passkey named `name` on the account page; the recovery codes it shows (the first factor)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(site.origin + "/account/mfa/")
    field = driver.find_element(By.ID, "passkey-name")
    field.clear()
    field.send_keys(name)
    with authenticator.touched():
        driver.find_element(By.ID, "add-passkey").click()
        wait(driver, ec.visibility_of_element_located((By.ID, "passkey-recovery")), "the recovery codes")
    return [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#passkey-recovery-codes li")]


def sign_out(driver: Any, site: Site) -> None:
    from tests.test_browser import submit

    driver.get(site.origin + "/")
    submit(driver)  # "Sign out"
    assert driver.current_url == site.origin + "/login/"


def open_login_page(driver: Any, site: Site) -> None:
    """The login page, once its script's autofill request (conditional mediation) has its options:
    clicking the button before then would race the script's own start."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(site.origin + "/login/")
    wait(driver, ec.visibility_of_element_located((By.ID, "passkey-sign-in")), "the passkey button")
    wait(driver, lambda d: d.execute_script(
        "return performance.getEntriesByType('resource').some((e) => e.name.endsWith('/api/passkey/options'))"),
        "the autofill request's options")


def click_passkey_sign_in(driver: Any, authenticator: Authenticator, site: Site) -> None:
    from selenium.webdriver.common.by import By

    open_login_page(driver, site)
    assert driver.current_url == site.origin + "/login/"  # the autofill request did not sign in by itself
    assert driver.find_element(By.ID, "id_username").get_attribute("value") == ""  # no email address typed
    with authenticator.touched():
        driver.find_element(By.ID, "passkey-sign-in").click()
        wait(driver, lambda d: d.execute_script(  # chromedriver runs it on the page that is there once loaded
            'const status = document.getElementById("passkey-status");'
            'return location.pathname !== "/login/" || !["", "Checking your passkey…"].includes(status.textContent);'),
            "the passkey's outcome")


def account_with_passkey(driver: Any, site: Site, email: str, name: str) -> Authenticator:
    """A new account that registered a passkey (password sign-in, the account page), signed out again:
    the authenticator that holds the passkey."""
    create_account(site, email)
    authenticator = Authenticator(driver)
    sign_in_with_password(driver, site, email)
    register_passkey(driver, authenticator, site, name)
    sign_out(driver, site)
    return authenticator


def test_register_a_passkey_sign_out_and_sign_in_with_it_and_no_email(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    email = "paula@example.test"
    create_account(site, email)
    authenticator = Authenticator(browser)
    sign_in_with_password(browser, site, email)
    wait_signed_in(browser, site, email)
    assert session(browser)["amr"] == ["pwd"]

    codes = register_passkey(browser, authenticator, site, "Paula's laptop")
    assert len(codes) == 10 and len(set(codes)) == 10 and all(codes), codes
    [credential] = authenticator.credentials()
    assert credential.is_resident_credential and credential.rp_id == "localhost"  # no IP address as RP ID
    browser.find_element(By.ID, "passkey-recovery-done").click()
    listed = wait(browser, ec.presence_of_all_elements_located((By.CSS_SELECTOR, "ul#passkeys > li")),
                  "the account's passkeys")
    assert len(listed) == 1 and listed[0].get_attribute("id").startswith("passkey-"), listed
    assert listed[0].find_element(By.TAG_NAME, "strong").text == "Paula's laptop"

    sign_out(browser, site)
    assert session(browser)["authenticated"] is False
    click_passkey_sign_in(browser, authenticator, site)  # nothing typed: the passkey names the account
    wait_signed_in(browser, site, email)
    now = session(browser)
    assert now["authenticated"] is True and now["email"] == email, now
    assert now["amr"][0] in ("hwk", "swk") and now["amr"][1:] == ["user", "mfa"], now


def test_the_login_page_signs_in_with_the_passkey_picked_from_autofill(browser: Any, site: Site) -> None:
    """The email field's autofill (a conditional-mediation request the script starts on load): the
    virtual authenticator, touched, picks the passkey at once, and the page signs in without a click."""
    email = "alice.autofill@example.test"
    authenticator = account_with_passkey(browser, site, email, "Alice's phone")
    with authenticator.touched():
        browser.get(site.origin + "/login/")
        wait_signed_in(browser, site, email)
    assert session(browser)["amr"][1:] == ["user", "mfa"]


def test_a_ceremony_started_on_blue_finishes_on_green(browser: Any, site: Site) -> None:
    """The challenge waits in the session and the database both clusters share: options from blue-1,
    then blue-1 crashes, and green-1 checks the answer and signs the browser in."""
    email = "bruno@example.test"
    create_account(site, email)
    authenticator = Authenticator(browser)
    browser.get(site.origin + "/logout/")  # a page of the origin with a CSRF token and no script
    browser.add_cookie({"name": "canary_pin", "value": PinSigner(PIN_SECRET).make_value(BLUE_PIN, int(time.time()))
                        .decode(), "path": "/", "httpOnly": True, "sameSite": "Lax"})
    assert fetch(browser, "GET", "/api/session")["servedBy"] == "blue/blue-1"
    sign_in_with_password(browser, site, email)
    wait_signed_in(browser, site, email)
    register_passkey(browser, authenticator, site, "Bruno's laptop")
    sign_out(browser, site)

    browser.get(site.origin + "/logout/")
    started = browser.execute_async_script(JS + """
      call("POST", "/api/passkey/options", { purpose: "sign-in" }).then((answer) => {
        window.passkeyOptions = answer.text;
        done({ status: answer.status, servedBy: answer.servedBy });
      }, (e) => done({ error: String(e) }));""")
    assert started == {"status": 200, "servedBy": "blue/blue-1"}, started
    try:
        site.blue.kill()
        site.router.wait_status(lambda s: not s["clusters"]["blue"]["available"], timeout=10)
        with authenticator.touched():
            finished = browser.execute_async_script(JS + """
              const options = JSON.parse(window.passkeyOptions);
              options.challenge = decode(options.challenge);
              (options.allowCredentials || []).forEach((c) => { c.id = decode(c.id); });
              navigator.credentials.get({ publicKey: options }).then((credential) => {
                const r = credential.response;
                return call("POST", "/api/passkey/sign-in", { next: "", credential: {
                  id: credential.id, rawId: encode(credential.rawId), type: credential.type,
                  authenticatorAttachment: credential.authenticatorAttachment || null,
                  clientExtensionResults: credential.getClientExtensionResults(),
                  response: { clientDataJSON: encode(r.clientDataJSON), authenticatorData: encode(r.authenticatorData),
                              signature: encode(r.signature), userHandle: r.userHandle ? encode(r.userHandle) : null },
                } });
              }).then(done, (e) => done({ error: String(e) }));""")
        assert finished.get("status") == 200, finished
        assert finished["servedBy"] == "green/green-1", finished
        assert json.loads(finished["text"])["authenticated"] is True
        now = fetch(browser, "GET", "/api/session")
        assert now["servedBy"] == "green/green-1" and now["json"]["email"] == email, now
        assert now["json"]["amr"][1:] == ["user", "mfa"], now
    finally:
        if not site.blue.running():
            site.blue.start()
        site.router.wait_status(all_available, timeout=15)


def test_a_counter_that_goes_back_is_refused(browser: Any, site: Site) -> None:
    """W3C WebAuthn §6.1.1: a signature counter that does not rise means a copy of the key signed."""
    from selenium.webdriver.common.by import By

    email = "carla@example.test"
    authenticator = account_with_passkey(browser, site, email, "Carla's laptop")
    click_passkey_sign_in(browser, authenticator, site)
    wait_signed_in(browser, site, email)
    [used] = authenticator.credentials()
    assert used.sign_count >= 2, used.sign_count  # registered, then signed in: the server keeps this one

    authenticator.replace_sign_count(0)  # its next signature counts 1, below what the server saw
    [copy] = authenticator.credentials()
    assert (copy.id, copy.sign_count) == (used.id, 0)
    sign_out(browser, site)
    click_passkey_sign_in(browser, authenticator, site)
    assert browser.current_url == site.origin + "/login/", "the copy of the passkey signed in"
    status = browser.find_element(By.ID, "passkey-status").text
    assert "copied" in status, status
    assert session(browser)["authenticated"] is False


def test_a_passkey_as_the_second_step_after_the_password(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    email = "dario@example.test"
    authenticator = account_with_passkey(browser, site, email, "Dario's laptop")

    sign_in_with_password(browser, site, email)
    assert browser.current_url.startswith(site.origin + "/login/mfa/"), browser.current_url
    assert session(browser)["authenticated"] is False  # the password alone is not enough any more
    button = wait(browser, ec.visibility_of_element_located((By.ID, "passkey-second-step")), "the passkey button")
    with authenticator.touched():
        button.click()
        wait_signed_in(browser, site, email)
    amr = session(browser)["amr"]
    assert amr[0] == "pwd" and amr[1] in ("hwk", "swk") and amr[2:] == ["user", "mfa"], amr
