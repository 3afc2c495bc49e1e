"""The account-wide step-up with a second factor from an unknown /64.

Past the account's failure limit, sources it does not know are refused (tests/test_account_guard.py).
Within the step-up budget (LOGINSVC_ACCOUNT_STEP_UP_CHECKS per window) such an attempt still has
its password checked: the correct password of an account with a second factor goes on to the code
and signs in at once, and the source becomes known; without a second factor it goes on to a code
mailed to the account; every other checked attempt (wrong password, unknown account) gets the
refusal's answer, and beyond the budget every one is refused without a check.
"""
from __future__ import annotations

import email
import logging
import re
from email import policy as email_policy
from typing import Any

import pytest
from django.test import Client, override_settings

from loginsvc.accounts import audit, known_sources, throttle
from loginsvc.accounts.models import ThrottleState
from loginsvc.mail import delivery
from loginsvc.mfa import mailed_code
from tests import plugin
from tests.conftest import PASSWORD
from tests.mfa.conftest import app_code, password_step, post_json
from tests.test_account_guard import Attacker, checked, network  # noqa: F401 - `checked` is a fixture

LIMIT = 3  # the account's failure limit in these tests


def new_64(host: int = 1, subnet: int = 1) -> str:
    """Host `host` of a /64 no attacker used (`subnet` picks another one, each in its own /56)."""
    return f"2001:db8:77:{subnet * 256:x}::{host:x}"


@pytest.fixture
def limits(settings) -> dict[str, Any]:
    """A small account limit, no delays before it; tests change the budget with `budget`."""
    settings.LOGINSVC = {**settings.LOGINSVC, "ACCOUNT_DELAY_THRESHOLD": 100, "ACCOUNT_FAILURE_LIMIT": LIMIT}
    return settings.LOGINSVC


def budget(settings, checks: int) -> None:
    settings.LOGINSVC = {**settings.LOGINSVC, "ACCOUNT_STEP_UP_CHECKS": checks}


def reach_the_limit(email: str) -> None:
    """LIMIT wrong passwords from LIMIT attacker /64s: the step-up is on."""
    attacker = Attacker()
    statuses = [attacker.guess(email, f"guess {i}", network(i), api=True).status_code for i in range(LIMIT)]
    assert statuses == [401] * LIMIT


def refusal(response: Any) -> dict[str, Any]:
    """The step-up's 429, checked, with its retry_after left out (it ticks down between requests)."""
    assert response.status_code == 429, response.content
    body = response.json()
    assert body["reason"] == "account" and body["retry_after"] == int(response["Retry-After"])
    assert 3590 <= body["retry_after"] <= 3600
    return {key: value for key, value in body.items() if key != "retry_after"}


def mailed(mailbox: Any) -> tuple[str, str]:
    """The code of the one sign-in confirmation the outbox delivered, and its text."""
    delivery.deliver_due()
    found = [email.message_from_string(raw, policy=email_policy.default) for raw in mailbox.messages]
    [message] = [m for m in found if "confirm a sign-in" in m["Subject"]]
    text = message.get_body(("plain",)).get_content()
    return re.search(r"^(\d{8})\s*$", text, re.M).group(1), text


def browser(ip: str) -> Client:
    return Client(enforce_csrf_checks=True, REMOTE_ADDR=ip)


@pytest.mark.django_db
def test_with_a_second_factor_an_unknown_64_signs_in_at_once_and_becomes_known(
        settings, limits, mfa_user, caplog) -> None:
    budget(settings, 1)  # one check: what follows passes only because the source is known now
    reach_the_limit(mfa_user.email)
    caplog.set_level(logging.INFO)
    owner = browser(new_64(1))
    first = password_step(owner, mfa_user)
    assert first.status_code == 200 and first.json() == {"mfa_required": True, "methods": ["totp"]}
    code = app_code(mfa_user)
    signed_in = post_json(owner, "/api/login/mfa", {"method": "totp", "code": code})
    assert signed_in.status_code == 200, signed_in.content
    # Told of the attacker's guesses, not of its own password step.
    assert signed_in.json() == {"authenticated": True, "email": mfa_user.email,
                                "failed_attempts_since_last_login": LIMIT}
    assert owner.get("/api/session").json()["amr"] == ["pwd", "otp", "mfa"]
    assert known_sources.device_cookie_name() in signed_in.cookies

    lines = [r for r in caplog.records if r.getMessage().startswith("login: signed in through the account step-up")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].account == audit.account_tag(mfa_user.email) and lines[0].method == "totp"
    logged = " ".join(str(vars(r)) for r in caplog.records)
    # The code as a number of its own: six random digits occur by chance inside a record's timestamps and ids.
    assert PASSWORD not in logged and not re.search(rf"(?<!\d){code}(?!\d)", logged) and mfa_user.email not in logged

    # The budget is spent, yet the /64 is known now (any browser) and so is the device (any network).
    again = password_step(browser(new_64(2)), mfa_user)
    assert again.status_code == 200 and again.json()["mfa_required"] is True
    device = browser(network(50))
    device.cookies[known_sources.device_cookie_name()] = signed_in.cookies[known_sources.device_cookie_name()].value
    assert password_step(device, mfa_user).json()["mfa_required"] is True
    # The owner's sign-in did not lift the step-up for other sources.
    refusal(Attacker().guess(mfa_user.email, PASSWORD, new_64(1, subnet=2), api=True))


@pytest.mark.django_db
def test_without_a_second_factor_the_right_password_goes_on_to_a_mailed_code(
        settings, limits, user, checked, mailbox) -> None:
    budget(settings, 3)
    reach_the_limit(user.email)
    attacker = Attacker()
    wrong = refusal(attacker.guess(user.email, "wrong password", new_64(1, subnet=2), api=True))
    owner = browser(new_64(1))
    right = password_step(owner, user)
    assert right.status_code == 200 and right.json() == {"mfa_required": True, "methods": ["email"]}
    assert owner.get("/api/session").json() == {"authenticated": False}  # nothing signed in yet
    page = attacker.guess(user.email, "wrong again", new_64(1, subnet=3))
    assert page.status_code == 429 and b"device or network you have used before" in page.content
    assert len(checked) == LIMIT + 2  # the three in the budget were checked (two wrong)
    beyond = refusal(attacker.guess(user.email, PASSWORD, new_64(1, subnet=4), api=True))
    assert len(checked) == LIMIT + 2  # beyond the budget: refused unchecked, even the right password
    assert wrong == beyond == {"error": "locked", "reason": "account"}
    code, text = mailed(mailbox)
    assert str(new_64(1)) in text and PASSWORD not in text
    wrong_code = f"{(int(code) + 1) % 10 ** 8:08d}"
    assert post_json(owner, "/api/login/mfa", {"method": "email", "code": wrong_code}).status_code == 401
    assert post_json(owner, "/api/login/mfa", {"method": "totp", "code": "123456"}).status_code == 401
    signed_in = post_json(owner, "/api/login/mfa", {"method": "email", "code": code})
    assert signed_in.status_code == 200, signed_in.content
    assert owner.get("/api/session").json()["amr"] == ["pwd"]  # a confirmation, not a second factor
    assert post_json(browser(new_64(1)), "/api/login/mfa", {"method": "email", "code": code}).status_code == 401
    assert password_step(browser(new_64(2)), user).status_code == 200  # its /64 is known now


@pytest.mark.django_db
def test_a_mailed_code_is_bound_to_its_browser_and_five_wrong_entries_end_it(settings, limits, user, mailbox) -> None:
    reach_the_limit(user.email)
    owner, other = browser(new_64(1)), browser(new_64(1))
    assert password_step(owner, user).json()["methods"] == ["email"]
    code, _text = mailed(mailbox)
    assert post_json(other, "/api/login/mfa", {"method": "email", "code": code}).status_code == 401
    wrong = f"{(int(code) + 1) % 10 ** 8:08d}"
    for _ in range(mailed_code.MAX_TRIES):
        assert post_json(owner, "/api/login/mfa", {"method": "email", "code": wrong}).status_code == 401
    assert post_json(owner, "/api/login/mfa", {"method": "email", "code": code}).status_code == 401
    page = owner.get("/login/mfa/")
    assert page.status_code == 302 and page["Location"].startswith("/login/")  # nothing left to enter


@pytest.mark.django_db
def test_an_unknown_account_gets_the_same_refusal_in_the_step_up(limits) -> None:
    reach_the_limit("nobody@example.test")
    body = refusal(Attacker().guess("nobody@example.test", PASSWORD, new_64(1), api=True))
    assert body == {"error": "locked", "reason": "account"}


@pytest.mark.django_db
def test_a_wrong_password_on_an_account_with_a_second_factor_gets_the_refusal_and_counts(
        settings, limits, mfa_user, checked) -> None:
    budget(settings, 1)
    reach_the_limit(mfa_user.email)
    guesser = browser(new_64(1))
    wrong = refusal(password_step(guesser, mfa_user, "wrong password"))
    assert len(checked) == LIMIT + 1  # its password was checked (the hasher ran) ...
    pair = throttle.counters_for(mfa_user.email, new_64(1), known=True)[0][0]
    assert int(plugin.REDIS.client().get(throttle.PREFIX + "n:" + pair.key)) == 1  # ... and counted a failure
    plain = refusal(Attacker().guess(mfa_user.email, "wrong password", new_64(1, subnet=2), api=True))
    assert wrong == plain  # the budget spent: the plain refusal looks the same
    # No second step is waiting for it.
    assert post_json(guesser, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)}).status_code == 401


@pytest.mark.django_db
def test_past_the_budget_even_the_password_and_factor_get_the_plain_refusal(
        settings, limits, mfa_user, checked) -> None:
    budget(settings, 2)
    reach_the_limit(mfa_user.email)
    attacker = Attacker()
    for subnet in (1, 2):
        refusal(attacker.guess(mfa_user.email, f"wrong {subnet}", new_64(1, subnet), api=True))
    assert len(checked) == LIMIT + 2
    owner = browser(new_64(1, subnet=3))
    assert refusal(password_step(owner, mfa_user)) == {"error": "locked", "reason": "account"}
    assert post_json(owner, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)}).status_code == 401
    assert owner.get("/api/session").json() == {"authenticated": False}


@pytest.mark.django_db
def test_wrong_codes_after_a_step_up_still_lock_the_pair(settings, limits, mfa_user) -> None:
    threshold = 4
    settings.LOGINSVC = {**settings.LOGINSVC, "LOCKOUT_THRESHOLD": threshold}
    reach_the_limit(mfa_user.email)
    holder = browser(new_64(1))  # someone with the password, guessing the code
    assert password_step(holder, mfa_user).json()["mfa_required"] is True
    wrong = [post_json(holder, "/api/login/mfa", {"method": "totp", "code": "000000"}).status_code
             for _ in range(threshold - 1)]
    assert wrong == [401] * (threshold - 1)  # the password and these: the pair's threshold
    locked = post_json(holder, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)})
    assert locked.status_code == 429 and locked.json()["reason"] == "address" and int(locked["Retry-After"]) > 0
    assert holder.get("/api/session").json() == {"authenticated": False}


@pytest.mark.django_db
def test_with_redis_down_the_budget_is_kept_on_the_database(settings, limits, mfa_user, own_redis, checked) -> None:
    own_redis.kill()
    caches = {"default": {**settings.CACHES["default"], "LOCATION": own_redis.url}}
    with override_settings(CACHES=caches, LOGINSVC={**settings.LOGINSVC, "ACCOUNT_STEP_UP_CHECKS": 2}):
        reach_the_limit(mfa_user.email)
        refusal(Attacker().guess(mfa_user.email, "wrong", new_64(1, subnet=2), api=True))
        owner = browser(new_64(1))
        assert password_step(owner, mfa_user).json() == {"mfa_required": True, "methods": ["totp"]}
        assert post_json(owner, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)}).status_code == 200
        refusal(Attacker().guess(mfa_user.email, "wrong", new_64(1, subnet=3), api=True))
        assert len(checked) == LIMIT + 1  # the last one, beyond the budget, was not checked
        row = ThrottleState.objects.get(key=throttle.step_up_counter(mfa_user.email).key)
        assert row.failures == 2 and row.locked_until is not None


@pytest.mark.django_db
def test_the_delays_before_the_limit_spend_no_budget_and_stay(settings, mfa_user, checked) -> None:
    settings.LOGINSVC = {**settings.LOGINSVC, "ACCOUNT_DELAY_THRESHOLD": 2, "ACCOUNT_FAILURE_LIMIT": 100}
    attacker = Attacker()
    assert [attacker.guess(mfa_user.email, "bad", network(i), api=True).status_code for i in range(2)] == [401] * 2
    delayed = password_step(browser(new_64(1)), mfa_user)  # even the password with its factor waits
    assert delayed.status_code == 429 and delayed.json()["reason"] == "account" and delayed["Retry-After"] == "1"
    assert attacker.guess(mfa_user.email, "bad", new_64(1, subnet=2), api=True).status_code == 429
    assert len(checked) == 2
    assert not plugin.REDIS.client().exists(throttle.PREFIX + "n:" + throttle.step_up_counter(mfa_user.email).key)


@pytest.mark.django_db
def test_the_sign_in_page_asks_for_the_mailed_code(settings, limits, user, mailbox) -> None:
    from tests.conftest import csrf_from

    reach_the_limit(user.email)
    owner = browser(new_64(1))
    owner.get("/login/")
    step = owner.post("/login/", {"username": user.email, "password": PASSWORD, "csrfmiddlewaretoken": csrf_from(owner)})
    assert step.status_code == 302 and step["Location"].startswith("/login/mfa/")
    page = owner.get(step["Location"])
    assert page.status_code == 200 and b"Code from the mail" in page.content and b"use-totp" not in page.content
    code, _text = mailed(mailbox)
    done = owner.post("/login/mfa/", {"method": "email", "code": code[:4] + " " + code[4:],
                                      "csrfmiddlewaretoken": csrf_from(owner)})
    assert done.status_code == 302 and owner.get("/api/session").json()["authenticated"] is True
