"""Notices: every change to how an account signs in is mailed to its owner (ASVS 2.2.3, 2.5.5), once, through the outbox."""
from __future__ import annotations

import email
import re
from email import policy
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from loginsvc.mail import delivery, messages, notices
from loginsvc.mfa import recovery
from tests.conftest import PASSWORD, csrf_from, login
from tests.mfa.conftest import app_code, mfa_user, password_step, post_json  # noqa: F401 - mfa_user: a fixture


def _delivered(mailbox: Any) -> list[email.message.EmailMessage]:
    delivery.deliver_due()
    return [email.message_from_string(raw, policy=policy.default) for raw in mailbox.messages]  # type: ignore[misc]


@pytest.mark.parametrize("change", sorted(notices.CHANGES))
def test_each_change_has_its_sentence_and_links_only_to_the_origin(change: str, settings: Any) -> None:
    settings.LOGINSVC = dict(settings.LOGINSVC, OIDC_ISSUER="https://login.example.com")
    message = messages.render("account_changed", {"email": "ann@example.test", "when": "2026-12-06 23:00",
                                                  "address": "192.0.2.7", "change": str(notices.CHANGES[change])})
    assert str(notices.CHANGES[change]) in message.text and "192.0.2.7" in message.html
    for part in (message.text, message.html):
        assert all(link.startswith("https://login.example.com/") for link in re.findall(r"https?://[^\s\"<>)]+", part))


@pytest.mark.django_db
def test_removing_the_app_tells_the_owner(mfa_user: Any, mailbox: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    assert login(browser, mfa_user.email, PASSWORD).status_code == 302
    assert post_json(browser, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)}).status_code == 200
    removed = browser.post("/account/mfa/app/remove/", {"password": PASSWORD, "csrfmiddlewaretoken": csrf_from(browser)})
    assert removed.status_code == 302
    [notice] = _delivered(mailbox)
    assert notice["To"] == mfa_user.email
    assert "The authenticator app was removed" in notice.get_body(("plain",)).get_content()


@pytest.mark.django_db
def test_signing_in_with_a_recovery_code_tells_the_owner(mfa_user: Any, mailbox: Any) -> None:
    codes = recovery.new_set(mfa_user)
    browser = Client(enforce_csrf_checks=True)
    password_step(browser, mfa_user)
    assert post_json(browser, "/api/login/mfa", {"method": "recovery", "code": codes[0]}).status_code == 200
    [notice] = _delivered(mailbox)
    assert "One of your recovery codes was used" in notice.get_body(("plain",)).get_content()
    assert codes[0] not in notice.as_string() and codes[0].replace("-", "") not in notice.as_string()


KINDS = sorted(p.name.removesuffix("_subject.txt") for p in
               (Path(__file__).resolve().parents[2] / "loginsvc" / "templates" / "mail").glob("*_subject.txt"))
FULL_CONTEXT = {"email": "ann@example.test", "when": "2026-12-07 03:00", "address": "198.51.100.7", "code": "12345678",
                "browser": "Firefox", "minutes": 10, "limit": 100, "reset": False, "change": "A passkey was added.",
                "old_email": "ann@example.test", "new_email": "ann@example.org", "undo_code": "ABCD-EFGH", "days": 7}


@pytest.mark.parametrize("kind", KINDS)
def test_every_message_has_text_and_html_links_only_to_the_origin_and_no_secret(kind: str, settings: Any) -> None:
    settings.LOGINSVC = dict(settings.LOGINSVC, OIDC_ISSUER="https://login.example.com")
    message = messages.render(kind, FULL_CONTEXT)
    assert message.subject and "\n" not in message.subject and message.text.strip() and "<html" in message.html
    for part in (message.subject, message.text, message.html):
        links = re.findall(r"https?://[^\s\"<>)]+", part)
        assert all(link.startswith("https://login.example.com/") for link in links), links
        assert PASSWORD not in part and settings.SECRET_KEY not in part and "{{" not in part and "{%" not in part
