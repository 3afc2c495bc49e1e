"""A real Dovecot (Debian's 2.3) asks the login service about every plain IMAP and SMTP submission login
(deploy/dovecot/): app passwords open what their scope says, a revoked one, the account's own password and a
deactivated account are refused at the next login, and wrong ones are throttled. imaplib and smtplib are the
mail clients; one node, one Dovecot and one relay SMTP server are shared by the tests of this module."""
from __future__ import annotations

import imaplib
import itertools
import json
import shutil
import smtplib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller

from deploy.dovecot_server import DovecotServer, ImapClient, missing
from deploy.node import free_port, manage
from tests import plugin
from tests.conftest import create_user_in
from tests.mailclients import oauth
from tests.support import Browser, LoginNode, Mailbox, fresh_database, node_env, require

SECRET = "the-mail-servers-own-secret-" + "d" * 20
PASSWORD = "a long and careful password"
REGISTER = """
from oauth2_provider.models import Application
Application.objects.create(client_id="dovecot", name="Dovecot", client_secret=%r, hash_client_secret=True,
    client_type=Application.CLIENT_CONFIDENTIAL, authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS)
"""


_addresses = itertools.count(10)


def next_address() -> str:
    """A loopback address no earlier call used (Linux routes all of 127/8 to the loopback interface)."""
    n = next(_addresses)
    return f"127.0.{n // 250}.{n % 250 + 2}"


@dataclass
class MailStack:
    node: LoginNode
    dovecot: DovecotServer

    def account(self, email: str) -> Browser:
        """A new account, signed in (so it may make app passwords at once)."""
        create_user_in(self.node, email, PASSWORD)
        browser = Browser(self.node.url)
        assert browser.login(email, PASSWORD).status_code == 200
        return browser

    def imap(self, user: str, password: str, source: str | None = None) -> str:
        """OK, or the server's refusal, of an IMAP LOGIN (and a SELECT once in). Each call comes from another
        loopback address unless `source` says which: Dovecot slows down an address's logins after failures
        (its auth penalty, up to 15 s), which the tests' deliberate failures must not add up to."""
        with ImapClient(self.dovecot.imap_port, source or next_address()) as client:
            try:
                client.login(user, password)
            except imaplib.IMAP4.error as exc:
                return str(exc)
            assert client.select("INBOX")[0] == "OK"
            return "OK"

    def smtp(self, user: str, password: str) -> int:
        """The SMTP code answering AUTH PLAIN on the submission port."""
        with smtplib.SMTP("127.0.0.1", self.dovecot.submission_port, timeout=10,
                          source_address=(next_address(), 0)) as client:
            client.ehlo()
            try:
                return client.login(user, password)[0]
            except smtplib.SMTPAuthenticationError as exc:
                return exc.smtp_code


def bearer_login(stack: MailStack, mechanism: str, user: str, token: str) -> tuple[str, list[bytes]]:
    """OK or the refusal of AUTHENTICATE `mechanism` with a bearer token, and the server's challenges (RFC
    7628 §3.2.2: on failure, an error JSON the client answers with a lone ^A)."""
    if mechanism == "OAUTHBEARER":
        payload = f"n,a={user},\x01auth=Bearer {token}\x01\x01".encode()
    else:
        payload = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    challenges: list[bytes] = []

    def answer(challenge: bytes) -> bytes:
        if challenges or challenge:
            challenges.append(challenge)
            return b"\x01"
        challenges.append(challenge)
        return payload

    with ImapClient(stack.dovecot.imap_port, next_address()) as client:
        try:
            client.authenticate(mechanism, answer)
        except imaplib.IMAP4.error as exc:
            return str(exc), [c for c in challenges if c]
        return "OK", []


def mail_tokens(stack: MailStack, browser: Browser) -> dict[str, str]:
    """The tokens a mail client gets through the system browser `browser` (signed in) and a loopback redirect."""
    code, verifier, redirect_uri = oauth.code_flow(lambda path: browser.call("GET", path),
                                                   lambda path, form: browser.call("POST", path, data=form))
    answer = requests.post(stack.node.url + "/oidc/token/", data=oauth.token_form(code, verifier, redirect_uri),
                           timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def app_password(browser: Browser, scope: str = "mail") -> dict[str, str]:
    made = browser.call("POST", "/api/app-passwords", json={"name": "imaplib", "scope": scope},
                        headers={"X-CSRFToken": browser.csrf_token()})
    assert made.status_code == 201, made.text
    return made.json()


@pytest.fixture(scope="module")
def mail_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailStack]:
    require(missing() is None, str(missing()))
    scratch = tmp_path_factory.mktemp("mail-stack")
    env = node_env(scratch / "var", plugin.REDIS.url)
    fresh_database(env)
    manage(env, "shell", "-v", "0", "-c", REGISTER % SECRET)
    manage(env, "shell", "-v", "0", "-c", oauth.REGISTER)
    node = LoginNode(env, "blue", "blue-1", scratch).start()
    relay = Controller(Mailbox(), hostname="127.0.0.1", port=free_port())
    relay.start()
    # Run as root (CI), Dovecot's mail processes are Debian's `dovecot` user: its folder must be reachable.
    run_dir = Path(tempfile.mkdtemp(prefix="loginsvc-dovecot-"))
    run_dir.chmod(0o711)
    dovecot = DovecotServer(run_dir, free_port(), free_port(), node.url, "dovecot", SECRET, relay.port,
                            auth_failure_delay="0").start()
    try:
        yield MailStack(node, dovecot)
    finally:
        dovecot.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        relay.stop()
        node.stop()
        assert '"level": "error"' not in node.log(), "the login service logged an error"


def test_an_app_password_opens_imap_and_submission_as_its_scope_says(mail_stack: MailStack) -> None:
    browser = mail_stack.account("gil@example.test")
    both, imap_only = app_password(browser, "mail"), app_password(browser, "imap")
    assert mail_stack.imap("Gil@Example.test", both["password"]) == "OK"
    assert mail_stack.smtp("gil@example.test", both["password"]) == 235
    assert mail_stack.imap("gil@example.test", imap_only["password"]) == "OK"
    assert mail_stack.smtp("gil@example.test", imap_only["password"]) == 535
    assert "AUTHENTICATIONFAILED" in mail_stack.imap("gil@example.test", PASSWORD)  # the account's own: refused
    listed = browser.call("GET", "/api/app-passwords").json()["app_passwords"]
    assert all(p["last_address"].startswith("127.0.") for p in listed)  # the mail client's, as Dovecot saw it


def test_revocation_and_deactivation_are_refused_at_the_next_login(mail_stack: MailStack) -> None:
    browser = mail_stack.account("hal@example.test")
    kept, revoked = app_password(browser), app_password(browser)
    assert mail_stack.imap("hal@example.test", revoked["password"]) == "OK"
    gone = browser.call("DELETE", f"/api/app-passwords/{revoked['id']}", headers={"X-CSRFToken": browser.csrf_token()})
    assert gone.status_code == 204
    assert "AUTHENTICATIONFAILED" in mail_stack.imap("hal@example.test", revoked["password"])
    assert mail_stack.imap("hal@example.test", kept["password"]) == "OK"
    manage(mail_stack.node.env, "disable_user", "hal@example.test")
    assert "AUTHENTICATIONFAILED" in mail_stack.imap("hal@example.test", kept["password"])


def test_wrong_passwords_are_throttled_for_the_account_and_the_client_address(mail_stack: MailStack) -> None:
    browser = mail_stack.account("ida@example.test")
    right = app_password(browser)["password"]
    address = next_address()
    assert "AUTHENTICATIONFAILED" in mail_stack.imap("ida@example.test", "abcd-efgh-jkmn-pqrs-tuvw", address)
    # Nine more wrong guesses from the same client address (as Dovecot asks for them) lock the pair.
    for _ in range(9):
        guess = requests.post(mail_stack.node.url + "/api/mail/check", auth=("dovecot", SECRET), timeout=10, data={
            "username": "ida@example.test", "password": "abcd-efgh-jkmn-pqrs-tuvw", "service": "imap",
            "remote_ip": address})
        assert guess.status_code == 401
    assert "AUTHENTICATIONFAILED" in mail_stack.imap("ida@example.test", right, address)  # locked: even the right one
    assert mail_stack.imap("ida@example.test", right) == "OK"  # from another address
    assert '"msg": "login: lock set"' in mail_stack.node.log()


def test_malformed_logins_are_refused_cleanly(mail_stack: MailStack) -> None:
    for user in ("", "no-at-sign", "gil@example.test\tx"):
        answer = mail_stack.imap(user, "abcd-efgh-jkmn-pqrs-tuvw")
        assert answer != "OK" and "UNAVAILABLE" not in answer, (user, answer)
    # SASL PLAIN payloads that no client should send: invalid UTF-8, no separators, empty parts.
    for payload in (b"\0gil@example.test\0\xff\xfe\xc0", b"no separators at all", b"\0\0", b"\0gil@example.test\0"):
        with ImapClient(mail_stack.dovecot.imap_port, next_address()) as client:
            with pytest.raises(imaplib.IMAP4.error) as refused:
                client.authenticate("PLAIN", lambda _challenge, raw=payload: raw)
            assert "UNAVAILABLE" not in str(refused.value), (payload, refused.value)


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
def test_bearer_tokens_open_imap_until_revoked_or_signed_out(mail_stack: MailStack, mechanism: str) -> None:
    email = f"{mechanism.lower()}@example.test"
    browser = mail_stack.account(email)
    token = mail_tokens(mail_stack, browser)["access_token"]
    assert bearer_login(mail_stack, mechanism, email, token) == ("OK", [])
    refused, challenges = bearer_login(mail_stack, mechanism, "someone.else@example.test", token)
    assert "AUTHENTICATIONFAILED" in refused  # the token is another account's
    revoked = requests.post(mail_stack.node.url + "/oidc/revoke/", timeout=10,
                            data={"token": token, "client_id": oauth.CLIENT_ID})
    assert revoked.status_code == 200
    refused, challenges = bearer_login(mail_stack, mechanism, email, token)
    assert "AUTHENTICATIONFAILED" in refused
    if mechanism == "OAUTHBEARER":  # RFC 7628 §3.2.2: the error JSON reaches the client
        error = json.loads(challenges[0])
        assert error["status"] == "invalid_token" and error["openid-configuration"].endswith(
            "/.well-known/openid-configuration")
    second = mail_tokens(mail_stack, browser)["access_token"]
    assert bearer_login(mail_stack, mechanism, email, second)[0] == "OK"
    browser.call("POST", "/logout/", data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]})
    assert "AUTHENTICATIONFAILED" in bearer_login(mail_stack, mechanism, email, second)[0]  # session signed out


def test_a_token_without_the_mail_scope_or_a_garbled_one_is_refused(mail_stack: MailStack) -> None:
    browser = mail_stack.account("jo@example.test")
    code, verifier, redirect_uri = oauth.code_flow(lambda path: browser.call("GET", path),
                                                   lambda path, form: browser.call("POST", path, data=form),
                                                   scope="openid email")
    token = requests.post(mail_stack.node.url + "/oidc/token/", timeout=10,
                          data=oauth.token_form(code, verifier, redirect_uri)).json()["access_token"]
    assert "AUTHENTICATIONFAILED" in bearer_login(mail_stack, "OAUTHBEARER", "jo@example.test", token)[0]
    for garbled in ("x" * 600, "not a token", "\u00e9t\u00e9"):
        answer = bearer_login(mail_stack, "XOAUTH2", "jo@example.test", garbled)[0]
        assert answer != "OK" and "UNAVAILABLE" not in answer, (garbled, answer)


def test_an_expired_token_is_refused_cleanly(mail_stack: MailStack) -> None:
    """Past its lifetime (LOGINSVC_ACCESS_TOKEN_SECONDS) a mail token opens nothing; the mail server hears
    `active: false`, never an error. (A token of any other product lacks the `mail` scope: the test above.)"""
    email = "lea@example.test"
    token = mail_tokens(mail_stack, mail_stack.account(email))["access_token"]
    assert bearer_login(mail_stack, "XOAUTH2", email, token) == ("OK", [])
    manage(mail_stack.node.env, "shell", "-v", "0", "-c",
           "from datetime import timedelta; from django.utils import timezone; "
           "from oauth2_provider.models import AccessToken; from loginsvc.sso.introspection import checksum; "
           f"AccessToken.objects.filter(token_checksum=checksum({token!r}))"
           ".update(expires=timezone.now() - timedelta(seconds=1))")
    refused, challenges = bearer_login(mail_stack, "OAUTHBEARER", email, token)
    assert "AUTHENTICATIONFAILED" in refused and json.loads(challenges[0])["status"] == "invalid_token"

@pytest.mark.browser
def test_rfc8628_a_device_signed_in_at_the_device_page_in_chromium_opens_imap(mail_stack: MailStack, chrome) -> None:
    from selenium.webdriver.common.by import By

    from tests.test_browser import submit

    email = "kim@example.test"
    mail_stack.account(email)
    started = requests.post(mail_stack.node.url + "/oidc/device-authorization/", timeout=10,
                            data={"client_id": oauth.CLIENT_ID, "scope": "openid mail offline_access"}).json()
    # The device's QR code: the page with the code filled in, reached through the sign-in page.
    chrome.get(mail_stack.node.url + "/device" + started["verification_uri_complete"].split("/device", 1)[1])
    chrome.find_element(By.ID, "id_username").send_keys(email)
    chrome.find_element(By.ID, "id_password").send_keys(PASSWORD)
    submit(chrome)
    assert chrome.find_element(By.ID, "user-code").get_attribute("value") == started["user_code"].replace("-", "")
    submit(chrome)
    assert chrome.title.startswith("Allow Mail app?")
    assert chrome.find_element(By.ID, "device-code").text == started["user_code"]   # to compare with the device's
    chrome.find_element(By.ID, "device-allow").click()
    assert "The device is signed in" in chrome.find_element(By.ID, "device-decided").text

    tokens = requests.post(mail_stack.node.url + "/oidc/token/", timeout=10, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": started["device_code"],
        "client_id": oauth.CLIENT_ID})
    assert tokens.status_code == 200, tokens.text
    assert bearer_login(mail_stack, "OAUTHBEARER", email, tokens.json()["access_token"]) == ("OK", [])
