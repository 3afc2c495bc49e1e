"""Changing one's password (ASVS 2.1.5, 2.1.6, 3.3.3): the current one first, the policy as at sign-up,
then every other session and product sign-in ends while this one stays, and the owner is told by mail."""
from __future__ import annotations

import email
from email import policy
from typing import Any

import pytest
from django.test import Client

from loginsvc.mail import delivery
from tests.conftest import PASSWORD, login
from tests.mfa.conftest import post_json

NEW_PASSWORD = "a brand new passphrase for ann"


def _change(browser: Client, current: str, new: str) -> Any:
    return post_json(browser, "/api/password", {"current_password": current, "new_password": new})


@pytest.mark.django_db
def test_a_change_ends_every_other_session_keeps_this_one_and_tells_the_owner(user: Any, mailbox: Any) -> None:
    this, other = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    for browser in (this, other):
        assert login(browser, user.email, PASSWORD).status_code == 302
    answer = _change(this, PASSWORD, NEW_PASSWORD)
    assert answer.status_code == 200 and answer.json() == {"changed": True}
    assert this.get("/api/session").json()["authenticated"] is True
    assert other.get("/api/session").json() == {"authenticated": False}
    assert login(Client(enforce_csrf_checks=True), user.email, NEW_PASSWORD).status_code == 302
    delivery.deliver_due()
    [raw] = mailbox.messages
    text = email.message_from_string(raw, policy=policy.default).get_body(("plain",)).get_content()
    assert "was changed on the account page" in text and NEW_PASSWORD not in raw and PASSWORD not in raw


@pytest.mark.parametrize("new, problem", [
    ("short one", "too short"),
    ("password1234", "too common"),
    ("ann.example@example.test", "too similar"),
    (PASSWORD, "must differ"),
])
@pytest.mark.django_db
def test_the_new_password_meets_the_policy(user: Any, new: str, problem: str) -> None:
    browser = Client(enforce_csrf_checks=True)
    login(browser, user.email, PASSWORD)
    answer = _change(browser, PASSWORD, new)
    assert answer.status_code == 400 and any(problem in p for p in answer.json()["problems"]), answer.json()
    assert login(Client(enforce_csrf_checks=True), user.email, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_a_wrong_current_password_is_401_and_counts_like_a_sign_in(user: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    login(browser, user.email, PASSWORD)
    statuses = [_change(browser, "not my password at all", NEW_PASSWORD).status_code for _ in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429


@pytest.mark.django_db
def test_only_for_a_signed_in_browser_with_its_csrf_token(user: Any) -> None:
    assert _change(Client(enforce_csrf_checks=True), PASSWORD, NEW_PASSWORD).status_code == 401
    browser = Client(enforce_csrf_checks=True)
    login(browser, user.email, PASSWORD)
    assert browser.post("/api/password", "{}", content_type="application/json").status_code == 403


@pytest.mark.django_db
def test_the_page(user: Any, mailbox: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    login(browser, user.email, PASSWORD)
    assert b'id="account-password"' in browser.get("/account/").content
    token = browser.cookies["csrftoken"].value
    wrong = browser.post("/account/password/", {"current_password": "nope", "new_password": NEW_PASSWORD,
                                                "csrfmiddlewaretoken": token})
    assert wrong.status_code == 401 and b"not correct" in wrong.content
    done = browser.post("/account/password/", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                               "csrfmiddlewaretoken": token})
    assert done.status_code == 200 and b'id="password-changed"' in done.content
    assert browser.get("/api/session").json()["authenticated"] is True
