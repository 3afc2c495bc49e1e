"""Changing the account's address: the password, a code to the new address, then 7 days in which the old
address can take it back (a code, no sign-in needed), through a real SMTP server."""
from __future__ import annotations

import email
import re
from datetime import timedelta
from email import policy
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from loginsvc.accounts.models import User
from loginsvc.mail import delivery
from loginsvc.selfservice.models import EmailChange
from tests.conftest import PASSWORD, csrf_from, login

NEW = "ann.new@example.test"


def _mail(mailbox: Any, to: str) -> str:
    delivery.deliver_due()
    found = [email.message_from_string(raw, policy=policy.default) for raw in mailbox.messages]
    [message] = [m for m in found if m["To"] == to][-1:]
    return message.get_body(("plain",)).get_content()


def _signed_in(user: Any) -> Client:
    browser = Client(enforce_csrf_checks=True)
    assert login(browser, user.email, PASSWORD).status_code == 302
    return browser


def _ask(browser: Client, new: str = NEW, password: str = PASSWORD) -> Any:
    return browser.post("/account/email/", {"new_email": new, "password": password,
                                            "csrfmiddlewaretoken": csrf_from(browser)})


def _confirm(browser: Client, code: str) -> Any:
    return browser.post("/account/email/", {"step": "confirm", "code": code, "csrfmiddlewaretoken": csrf_from(browser)})


def _change(user: Any, mailbox: Any) -> tuple[Client, str]:
    """The whole change; the undo code the old address got."""
    browser = _signed_in(user)
    assert _ask(browser).status_code == 200
    [code] = re.findall(r"^ +(\d{8})\s*$", _mail(mailbox, NEW), re.MULTILINE)
    done = _confirm(browser, code)
    assert done.status_code == 200 and b'id="email-changed"' in done.content
    [undo] = re.findall(r"^ +([a-z0-9]{5}-[a-z0-9]{5})\s*$", _mail(mailbox, "ann.example@example.test"), re.MULTILINE)
    return browser, undo


@pytest.mark.django_db
def test_the_new_address_confirms_and_the_old_one_is_told_with_a_way_back(user: Any, mailbox: Any) -> None:
    browser, undo = _change(user, mailbox)
    assert User.objects.get(pk=user.pk).email == NEW
    assert browser.get("/api/session").json()["email"] == NEW               # this session goes on
    assert login(Client(enforce_csrf_checks=True), NEW, PASSWORD).status_code == 302
    assert len(undo) == 11


@pytest.mark.django_db
def test_the_password_first_and_the_code_only_in_the_asking_browser(user: Any, mailbox: Any) -> None:
    browser = _signed_in(user)
    assert _ask(browser, password="not my password").status_code == 400 and not EmailChange.objects.exists()
    assert _ask(browser).status_code == 200
    [code] = re.findall(r"^ +(\d{8})\s*$", _mail(mailbox, NEW), re.MULTILINE)
    assert _confirm(_signed_in(user), code).status_code == 400               # another browser of the same account
    wrong = f"{(int(code) + 1) % 10 ** 8:08d}"
    assert [_confirm(browser, wrong).status_code for _ in range(5)] == [400] * 5
    assert _confirm(browser, code).status_code == 400                        # 5 wrong entries ended it
    assert User.objects.get(pk=user.pk).email == user.email


@pytest.mark.django_db
def test_another_accounts_address_is_refused_only_once_its_code_is_given(user: Any, mailbox: Any,
                                                                          django_user_model: Any) -> None:
    django_user_model.objects.create_user(NEW, "someone else's long password")
    browser = _signed_in(user)
    assert _ask(browser).status_code == 200                                  # the same answer as for a free address
    [code] = re.findall(r"^ +(\d{8})\s*$", _mail(mailbox, NEW), re.MULTILINE)
    taken = _confirm(browser, code)
    assert taken.status_code == 400 and b"cannot be used" in taken.content
    assert User.objects.get(pk=user.pk).email == user.email


@pytest.mark.django_db
def test_the_old_address_takes_it_back_and_everyone_is_signed_out(user: Any, mailbox: Any) -> None:
    browser, undo = _change(user, mailbox)
    stranger = Client(enforce_csrf_checks=True)
    token = csrf_from(stranger)
    wrong = stranger.post("/account/email/undo/", {"email": user.email, "code": "aaaaa-aaaaa", "csrfmiddlewaretoken": token})
    assert wrong.status_code == 400
    back = stranger.post("/account/email/undo/", {"email": "ANN.example@example.test", "code": undo.upper(),
                                                  "csrfmiddlewaretoken": token})
    assert back.status_code == 200 and b'id="email-undone"' in back.content
    restored = User.objects.get(pk=user.pk)
    assert restored.email == "ann.example@example.test" and not restored.has_usable_password()
    assert browser.get("/api/session").json() == {"authenticated": False}
    assert login(Client(enforce_csrf_checks=True), NEW, PASSWORD).status_code == 401
    again = stranger.post("/account/email/undo/", {"email": user.email, "code": undo, "csrfmiddlewaretoken": token})
    assert again.status_code == 400                                          # once


@pytest.mark.django_db
def test_after_seven_days_there_is_no_way_back(user: Any, mailbox: Any) -> None:
    _, undo = _change(user, mailbox)
    EmailChange.objects.update(undo_until=timezone.now() - timedelta(seconds=1))
    stranger = Client(enforce_csrf_checks=True)
    late = stranger.post("/account/email/undo/", {"email": user.email, "code": undo,
                                                  "csrfmiddlewaretoken": csrf_from(stranger)})
    assert late.status_code == 400 and User.objects.get(pk=user.pk).email == NEW
