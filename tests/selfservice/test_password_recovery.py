"""A forgotten password: POST /api/recover, the 8-digit code from a real SMTP server's mail, POST /api/recover/confirm.

OWASP Forgot Password Cheat Sheet: the same answer and the same work for every address, a random
single-use code that expires, bound to the browser that asked, few tries, throttled; afterwards
every session and sign-in of the account ends and the owner is told.
"""
from __future__ import annotations

import email
import re
from datetime import timedelta
from email import policy
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loginsvc.mail import delivery
from loginsvc.mail.models import OutgoingMail
from loginsvc.selfservice.models import PasswordReset
from tests.conftest import PASSWORD, login
from tests.mfa.conftest import app_code, mfa_user, post_json  # noqa: F401 - mfa_user: a fixture

NEW_PASSWORD = "a brand new passphrase for ann"


def _texts(mailbox: Any) -> list[str]:
    delivery.deliver_due()
    return [email.message_from_string(raw, policy=policy.default).get_body(("plain",)).get_content()
            for raw in mailbox.messages]


def _code(mailbox: Any) -> str:
    [code] = re.findall(r"^ +(\d{8})\s*$", _texts(mailbox)[-1], re.MULTILINE)
    return code


def _ask(browser: Client, address: str) -> Any:
    return post_json(browser, "/api/recover", {"email": address})


def _confirm(browser: Client, address: str, code: str, password: str = NEW_PASSWORD, **extra: str) -> Any:
    return post_json(browser, "/api/recover/confirm", {"email": address, "code": code, "new_password": password,
                                                       **extra})


@pytest.mark.django_db
def test_asking_answers_and_works_the_same_for_an_address_without_an_account(user: Any, mailbox: Any) -> None:
    answers, queries = [], []
    for address in (user.email, "nobody@example.test"):
        with CaptureQueriesContext(connection) as captured:
            answers.append(_ask(Client(enforce_csrf_checks=True), address))
        queries.append([re.sub(r"'[^']*'|\d+", "?", q["sql"]) for q in captured.captured_queries
                        if "django_session" not in q["sql"]])
    assert [a.status_code for a in answers] == [202, 202] and answers[0].json() == answers[1].json()
    assert queries[0] == queries[1]                       # the same statements: no timing tells them apart
    assert PasswordReset.objects.count() == 2 and OutgoingMail.objects.count() == 2
    texts = _texts(mailbox)
    assert len(texts) == 1 and "ann.example@example.test" in texts[0]   # only the real account gets mail


@pytest.mark.django_db
def test_the_mailed_code_sets_the_password_ends_every_sign_in_and_tells_the_owner(user: Any, mailbox: Any) -> None:
    signed_in = Client(enforce_csrf_checks=True)
    assert login(signed_in, user.email, PASSWORD).status_code == 302
    browser = Client(enforce_csrf_checks=True)
    _ask(browser, "ANN.example@example.test")                         # any case
    answer = _confirm(browser, user.email, _code(mailbox))
    assert answer.status_code == 200 and answer.json() == {"reset": True, "signed_out_everywhere": True}
    assert signed_in.get("/api/session").json() == {"authenticated": False}
    assert browser.get("/api/session").json() == {"authenticated": False}  # sign in anew
    assert login(Client(enforce_csrf_checks=True), user.email, PASSWORD).status_code == 401
    assert login(Client(enforce_csrf_checks=True), user.email, NEW_PASSWORD).status_code == 302
    notice = _texts(mailbox)[-1]
    assert "was reset with a code mailed to this address" in notice and NEW_PASSWORD not in notice


@pytest.mark.django_db
def test_a_code_works_once_and_only_in_the_browser_that_asked(user: Any, mailbox: Any) -> None:
    asking, other = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    _ask(asking, user.email)
    code = _code(mailbox)
    refused = _confirm(other, user.email, code)
    assert refused.status_code == 400 and "not valid" in refused.json()["error"]
    assert _confirm(asking, user.email, code).status_code == 200
    assert _confirm(asking, user.email, code, "yet another passphrase here").status_code == 400   # replayed


@pytest.mark.django_db
def test_five_wrong_entries_end_the_code_and_an_expired_one_is_refused(user: Any, mailbox: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    _ask(browser, user.email)
    code = _code(mailbox)
    wrong = f"{(int(code) + 1) % 10 ** 8:08d}"
    assert [_confirm(browser, user.email, wrong).status_code for _ in range(5)] == [400] * 5
    assert _confirm(browser, user.email, code).status_code == 400
    _ask(browser, user.email)
    PasswordReset.objects.filter(used=None, wrong=0).update(until=timezone.now() - timedelta(seconds=1))
    assert _confirm(browser, user.email, _code(mailbox)).status_code == 400


@pytest.mark.django_db
def test_at_most_five_codes_an_hour_then_the_same_answer_and_no_mail(user: Any, mailbox: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    answers = [_ask(browser, user.email) for _ in range(7)]
    assert {a.status_code for a in answers} == {202} and len({a.content for a in answers}) == 1
    assert len(_texts(mailbox)) == 5


@pytest.mark.django_db
def test_a_network_asking_too_often_waits(settings: Any, mailbox: Any) -> None:
    settings.LOGINSVC = dict(settings.LOGINSVC, RECOVERY_IP_REQUESTS=3)
    answers = [_ask(Client(enforce_csrf_checks=True), f"someone{i}@example.test") for i in range(4)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert int(answers[-1]["Retry-After"]) > 0


@pytest.mark.django_db
def test_guesses_count_like_passwords_and_lock(user: Any, mailbox: Any) -> None:
    browsers = [Client(enforce_csrf_checks=True) for _ in range(12)]
    statuses = [_confirm(b, user.email, "12345678").status_code for b in browsers]
    assert statuses[:10] == [400] * 10 and 429 in statuses[10:]


@pytest.mark.django_db
def test_an_account_with_a_second_factor_must_pass_it_too(mfa_user: Any, mailbox: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    _ask(browser, mfa_user.email)
    code = _code(mailbox)
    due = _confirm(browser, mfa_user.email, code)
    assert due.status_code == 401 and due.json()["mfa_required"] is True and due.json()["methods"] == ["totp"]
    assert _confirm(browser, mfa_user.email, code, method="totp", mfa_code="000000").status_code == 400
    done = _confirm(browser, mfa_user.email, code, method="totp", mfa_code=app_code(mfa_user))
    assert done.status_code == 200
    assert login(Client(enforce_csrf_checks=True), mfa_user.email, NEW_PASSWORD).status_code == 302  # then its code


@pytest.mark.django_db
def test_a_weak_password_is_refused_with_the_validators_messages_and_the_code_stays(user: Any, mailbox: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    _ask(browser, user.email)
    code = _code(mailbox)
    weak = _confirm(browser, user.email, code, "password1234")
    assert weak.status_code == 400 and any("too common" in p for p in weak.json()["problems"])
    assert _confirm(browser, user.email, code).status_code == 200


@pytest.mark.parametrize("body, status", [
    ({"email": "ann@example.test", "code": "1234abcd", "new_password": NEW_PASSWORD}, 400),
    ({"email": 7, "code": "12345678", "new_password": NEW_PASSWORD}, 400),
    ({"email": "ann@example.test", "code": "12345678"}, 400),
    ({"email": "ann@example.test", "code": "12345678", "new_password": "\ud800 lone surrogate"}, 400),
    ("not json", 400),
    ({"email": "not an address"}, 400),
    ([1, 2], 400),
])
@pytest.mark.django_db
def test_bad_input_is_a_clear_400(body: Any, status: int) -> None:
    answer = post_json(Client(enforce_csrf_checks=True), "/api/recover/confirm", body)
    assert answer.status_code == status and "error" in answer.json()


@pytest.mark.django_db
def test_both_steps_need_the_csrf_token(user: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    for path in ("/api/recover", "/api/recover/confirm"):
        assert browser.post(path, "{}", content_type="application/json").status_code == 403


@pytest.mark.django_db
def test_the_page_asks_then_sets_the_password(user: Any, mailbox: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/recover/")
    token = browser.cookies["csrftoken"].value
    assert page.status_code == 200 and b'id="recover-ask"' in page.content
    asked = browser.post("/recover/", {"email": user.email, "csrfmiddlewaretoken": token})
    assert asked.status_code == 200 and b"If an account has this address" in asked.content
    done = browser.post("/recover/", {"step": "confirm", "email": user.email, "code": _code(mailbox),
                                      "new_password": NEW_PASSWORD, "csrfmiddlewaretoken": token})
    assert done.status_code == 200 and b'id="recover-done"' in done.content
    assert NEW_PASSWORD.encode() not in done.content


@pytest.mark.parametrize("address", ["", "not an address", "a@" + "b" * 260 + ".test", "\ud800@example.test"])
@pytest.mark.django_db
def test_asking_for_what_cannot_be_an_address_is_a_clear_400(address: str) -> None:
    answer = _ask(Client(enforce_csrf_checks=True), address)
    assert answer.status_code == 400 and "error" in answer.json() and not PasswordReset.objects.exists()

