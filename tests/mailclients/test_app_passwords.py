"""App passwords: made after a recent sign-in (with the second factor, if any), shown once, kept as a keyed digest,
scoped, revocable; and the mail server's check of a plain IMAP/SMTP login, throttled and audited like a password.

In process (Django's test client, the real database and Redis); Dovecot asking it is in tests/mailclients/."""
from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from django.test import Client

from loginsvc.accounts import sessions
from loginsvc.mailclients import app_passwords
from loginsvc.mailclients.models import AppPassword
from loginsvc.staff.models import AuditEvent
from tests.conftest import PASSWORD, csrf_from, login
from tests.mfa.conftest import app_code, mfa_user, post_json  # noqa: F401 - mfa_user is a fixture
from tests.sso.conftest import SECRET, register

SHAPE = re.compile(r"^([a-km-np-z2-9]{4}-){4}[a-km-np-z2-9]{4}$")


@pytest.fixture
def dovecot(db: None) -> dict[str, str]:
    """The mail server's confidential client, as HTTP Basic credentials."""
    register("dovecot")
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"dovecot:{SECRET}".encode()).decode()}


def check(credentials: dict[str, str], username: str, password: str, service: str = "imap",
          remote_ip: str = "192.0.2.10") -> Any:
    return Client().post("/api/mail/check", {"username": username, "password": password, "service": service,
                                             "remote_ip": remote_ip}, **credentials)


def signed_in(user: Any) -> Client:
    browser = Client(enforce_csrf_checks=True)
    assert login(browser, user.email, PASSWORD).status_code == 302
    return browser


def make(browser: Client, name: str = "Apple Mail", scope: str = "mail") -> Any:
    return post_json(browser, "/api/app-passwords", {"name": name, "scope": scope})


@pytest.mark.django_db
def test_made_once_listed_without_it_and_opening_only_its_scope(user: Any, dovecot: dict[str, str]) -> None:
    browser = signed_in(user)
    made = make(browser, "iPhone", "imap")
    assert made.status_code == 201, made.content
    body = made.json()
    assert set(body) == {"id", "name", "scope", "password"} and SHAPE.match(body["password"])
    listed = browser.get("/api/app-passwords").json()["app_passwords"]
    assert [p["name"] for p in listed] == ["iPhone"] and "password" not in listed[0] and listed[0]["last_used"] is None
    row = AppPassword.objects.get()
    assert body["password"] not in row.digest and body["password"].replace("-", "") not in row.digest
    typed = body["password"].upper().replace("-", " ")  # as a person might type it
    ok = check(dovecot, "Ann.Example@Example.test", typed)
    assert ok.status_code == 200 and ok.json() == {"user": user.email, "via": "app_password"}
    assert ok["Cache-Control"].startswith("max-age=0")
    assert check(dovecot, user.email, body["password"], "submission").status_code == 401  # IMAP only
    assert check(dovecot, "bob@example.test", body["password"]).status_code == 401  # another account's name
    listed = browser.get("/api/app-passwords").json()["app_passwords"]
    assert listed[0]["last_used"] and listed[0]["last_address"] == "192.0.2.10"
    assert AuditEvent.objects.filter(user_id=user.pk, message="mail: app password used").count() == 1
    assert browser.delete(f"/api/app-passwords/{body['id']}").status_code == 403  # CSRF
    assert browser.delete(f"/api/app-passwords/{body['id']}", HTTP_X_CSRFTOKEN=csrf_from(browser)).status_code == 204
    assert check(dovecot, user.email, body["password"]).status_code == 401  # revoked: the next login
    assert browser.delete(f"/api/app-passwords/{body['id']}", HTTP_X_CSRFTOKEN=csrf_from(browser)).status_code == 404


@pytest.mark.django_db
def test_making_one_needs_a_recent_sign_in(user: Any) -> None:
    browser = signed_in(user)
    session = browser.session
    session[sessions.AUTH_TIME] -= app_passwords.REAUTHENTICATED_SECONDS + 1
    session.save()
    refused = make(browser)
    assert refused.status_code == 401 and refused.json()["reauthenticate"] == "/login/?next=%2Faccount%2Fapp-passwords%2F&reauth=1"
    page = browser.post("/account/app-passwords/", {"csrfmiddlewaretoken": csrf_from(browser), "action": "create",
                                                    "name": "x", "scope": "mail"})
    assert page.status_code == 302 and "reauth=1" in page["Location"]
    assert login(browser, user.email, PASSWORD).status_code == 302  # confirm it is me
    assert make(browser).status_code == 201
    assert Client().get("/api/app-passwords").status_code == 401


@pytest.mark.django_db
def test_with_a_second_factor_the_sign_in_must_have_used_it(mfa_user: Any, dovecot: dict[str, str]) -> None:  # noqa: F811
    browser = Client(enforce_csrf_checks=True)
    assert post_json(browser, "/api/login", {"username": mfa_user.email, "password": PASSWORD}).status_code == 200
    assert post_json(browser, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)}).status_code == 200
    assert make(browser).status_code == 201
    settings_allow = {"MAIL_ACCOUNT_PASSWORD": "allow"}
    from django.test import override_settings
    from django.conf import settings

    with override_settings(LOGINSVC={**settings.LOGINSVC, **settings_allow}):
        assert check(dovecot, mfa_user.email, PASSWORD).status_code == 401  # never the password alone here


@pytest.mark.django_db
def test_the_account_password_opens_mail_only_when_ops_allow_it(user: Any, dovecot: dict[str, str], settings: Any) -> None:
    assert check(dovecot, user.email, PASSWORD).status_code == 401
    settings.LOGINSVC = {**settings.LOGINSVC, "MAIL_ACCOUNT_PASSWORD": "allow"}
    allowed = check(dovecot, user.email, PASSWORD, "smtp")
    assert allowed.status_code == 200 and allowed.json() == {"user": user.email, "via": "account_password"}


@pytest.mark.django_db
def test_wrong_passwords_are_throttled_per_account_and_address(user: Any, dovecot: dict[str, str]) -> None:
    statuses = [check(dovecot, user.email, app_passwords.new_password()).status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]
    locked = check(dovecot, user.email, app_passwords.new_password())
    assert int(locked["Retry-After"]) > 0 and locked.json()["error"] == "locked"
    assert check(dovecot, user.email, app_passwords.new_password(), remote_ip="192.0.2.99").status_code == 401


@pytest.mark.parametrize("fields, status", [
    ({"service": "pop3"}, 400), ({"remote_ip": "not an address"}, 400), ({"username": ""}, 401),
    ({"password": ""}, 401), ({"password": "x" * 10_000}, 401),
])
@pytest.mark.django_db
def test_bad_input_is_a_clear_answer(user: Any, dovecot: dict[str, str], fields: dict[str, str], status: int) -> None:
    form = {"username": user.email, "password": "whatever", "service": "imap", "remote_ip": "192.0.2.1", **fields}
    answer = Client().post("/api/mail/check", form, **dovecot)
    assert answer.status_code == status and "error" in answer.json()


@pytest.mark.django_db
def test_invalid_utf_8_is_refused_like_a_wrong_password(user: Any, dovecot: dict[str, str]) -> None:
    body = f"username={user.email}&password=%FF%FE%C0&service=imap&remote_ip=192.0.2.1".encode()
    answer = Client().post("/api/mail/check", body, content_type="application/x-www-form-urlencoded", **dovecot)
    assert answer.status_code == 401 and answer.json() == {"error": "invalid_credentials"}


@pytest.mark.django_db
def test_only_the_mail_servers_client_may_ask(user: Any, dovecot: dict[str, str]) -> None:
    register("webmail")  # another confidential product: no password oracle for it
    other = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"webmail:{SECRET}".encode()).decode()}
    wrong = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"dovecot:not-the-secret").decode()}
    for credentials in (other, wrong, {}):
        answer = check(credentials, user.email, "whatever")
        assert answer.status_code == 401 and answer.json() == {"error": "invalid_client"}


@pytest.mark.django_db
def test_every_app_password_ends_with_all_sign_ins(user: Any, dovecot: dict[str, str]) -> None:
    browser = signed_in(user)
    password = make(browser).json()["password"]
    assert post_json(browser, "/api/password", {"current_password": PASSWORD,
                                                "new_password": "another long passphrase 42"}).status_code == 200
    assert check(dovecot, user.email, password).status_code == 401 and not AppPassword.objects.exists()


@pytest.mark.django_db
def test_names_scopes_and_the_limit(user: Any) -> None:
    browser = signed_in(user)
    assert make(browser, "", "mail").status_code == 400
    assert make(browser, "x" * 65, "mail").status_code == 400
    assert make(browser, "ok", "pop3").status_code == 400
    assert post_json(browser, "/api/app-passwords", {"name": 5, "scope": "mail"}).status_code == 400
    for i in range(app_passwords.MAX_PER_ACCOUNT):
        assert make(browser, f"device {i}").status_code == 201
    over = make(browser, "one too many")
    assert over.status_code == 400 and "at most" in over.json()["error"]


@pytest.mark.django_db
def test_the_page_shows_a_new_password_once_and_revokes(user: Any, mailbox: Any) -> None:
    from loginsvc.mail import delivery

    browser = signed_in(user)
    form = {"csrfmiddlewaretoken": csrf_from(browser), "action": "create", "name": "Outlook", "scope": "imap"}
    page = browser.post("/account/app-passwords/", form)
    assert page.status_code == 200
    shown = re.search(rb'id="app-password-value">([^<]+)<', page.content).group(1).decode()
    assert SHAPE.match(shown) and shown.encode() not in browser.get("/account/app-passwords/").content
    delivery.deliver_due()
    assert any("app password was made" in m for m in mailbox.messages) and not any(shown in m for m in mailbox.messages)
    row = AppPassword.objects.get()
    assert browser.post("/account/app-passwords/", {**form, "action": "revoke", "id": row.public_id}).status_code == 302
    assert not AppPassword.objects.exists()


@pytest.mark.django_db
def test_a_password_guesser_elsewhere_does_not_cut_off_the_owners_mail_programs(user: Any, dovecot: dict[str, str],
                                                                                settings: Any) -> None:
    browser = signed_in(user)
    password = make(browser).json()["password"]
    settings.LOGINSVC = {**settings.LOGINSVC, "ACCOUNT_DELAY_THRESHOLD": 100, "ACCOUNT_FAILURE_LIMIT": 3,
                         "MAIL_ACCOUNT_PASSWORD": "allow"}
    for i in range(4):  # wrong web passwords from four networks: the account-wide step-up is on
        Client(REMOTE_ADDR=f"198.51.100.{i}").post("/api/login", {"username": user.email, "password": "guess"},
                                                   content_type="application/json")
    web = login(Client(REMOTE_ADDR="203.0.113.50"), user.email, PASSWORD)
    assert web.status_code == 302 and web["Location"].startswith("/login/mfa/")  # the web: held for a mailed code
    assert check(dovecot, user.email, password, remote_ip="203.0.113.51").status_code == 200  # mail: not held
    held = check(dovecot, user.email, PASSWORD, remote_ip="203.0.113.52")  # the account's own password: held
    assert held.status_code == 429
