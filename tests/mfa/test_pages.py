"""The pages: the sign-in's second step, and setting up, renewing and removing factors on the account page."""
from __future__ import annotations

import re
import time

import pyotp
import pytest
from django.test import Client

from loginsvc.mfa import recovery, totp
from tests.conftest import PASSWORD, csrf_from, login
from tests.mfa.conftest import app_code

NEXT = "https://webmail.example.test/inbox"


def post(client: Client, path: str, **data: str):
    return client.post(path, {"csrfmiddlewaretoken": csrf_from(client), **data})


@pytest.mark.django_db
def test_the_sign_in_page_asks_for_the_code_then_goes_on_to_next(client: Client, mfa_user) -> None:
    response = login(client, mfa_user.email, PASSWORD, next=NEXT)
    assert response.status_code == 302 and response["Location"].startswith("/login/mfa/?next=")
    page = client.get(response["Location"])
    assert page.status_code == 200 and b'autocomplete="one-time-code"' in page.content
    assert client.get("/api/session").json() == {"authenticated": False}
    wrong = post(client, "/login/mfa/", method="totp", code="000000", next=NEXT)
    assert wrong.status_code == 401 and b'role="alert"' in wrong.content
    malformed = post(client, "/login/mfa/", method="totp", code="abc", next=NEXT)
    assert malformed.status_code == 400
    done = post(client, "/login/mfa/", method="totp", code=app_code(mfa_user), next=NEXT)
    # The wrong code is reported first, on the home page, which then offers `next`.
    assert done.status_code == 302 and done["Location"] == "/"
    home = client.get("/").content.decode()
    assert 'id="failed-attempts"' in home and f'href="{NEXT}"' in home
    assert client.get("/api/session").json()["amr"] == ["pwd", "otp", "mfa"]
    again = Client(enforce_csrf_checks=True)  # no failure this time: straight on to `next`
    login(again, mfa_user.email, PASSWORD, next=NEXT)
    assert post(again, "/login/mfa/", method="totp", code=app_code(mfa_user, 1), next=NEXT)["Location"] == NEXT


@pytest.mark.django_db
def test_a_recovery_code_on_the_page(client: Client, mfa_user) -> None:
    codes = recovery.new_set(mfa_user)
    login(client, mfa_user.email, PASSWORD)
    page = client.get("/login/mfa/?method=recovery")
    assert b'name="method" value="recovery"' in page.content
    done = post(client, "/login/mfa/", method="recovery", code=codes[1])
    assert done.status_code == 302 and done["Location"] == "/"


@pytest.mark.django_db
def test_the_second_step_without_a_password_goes_back_to_the_sign_in_page(client: Client, mfa_user) -> None:
    response = client.get("/login/mfa/?next=" + NEXT)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


@pytest.mark.django_db
def test_setting_up_an_app_shows_a_qr_code_then_recovery_codes_once(client: Client, user) -> None:
    assert login(client, user.email, PASSWORD).status_code == 302
    account = client.get("/account/mfa/")
    assert b"Only your password protects this account" in account.content
    setup = post(client, "/account/mfa/app/", action="start")
    assert setup.status_code == 200 and b"<svg" in setup.content and "no-store" in setup["Cache-Control"]
    secret = re.search(rb'<code id="secret">([A-Z2-7 ]+)</code>', setup.content).group(1).decode().replace(" ", "")
    wrong = post(client, "/account/mfa/app/", action="confirm", code="000000")
    assert wrong.status_code == 400 and totp.confirmed_device(user) is None
    done = post(client, "/account/mfa/app/", action="confirm", code=pyotp.TOTP(secret).at(time.time()))
    assert done.status_code == 200, done.content
    shown = re.findall(rb"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", done.content)
    assert len(shown) == 10 and totp.confirmed_device(user) is not None
    assert recovery.use(user, recovery.normalise(shown[0].decode()))
    assert b"Recovery codes left: <strong>9</strong>" in client.get("/account/mfa/").content


@pytest.mark.django_db
def test_new_recovery_codes_and_removal_ask_for_the_password(client: Client, mfa_user) -> None:
    old = recovery.new_set(mfa_user)
    login(client, mfa_user.email, PASSWORD)
    post(client, "/login/mfa/", method="totp", code=app_code(mfa_user))
    refused = post(client, "/account/mfa/recovery-codes/", password="not the password")
    assert refused.status_code == 401 and recovery.use(mfa_user, recovery.normalise(old[0]))
    renewed = post(client, "/account/mfa/recovery-codes/", password=PASSWORD)
    assert renewed.status_code == 200 and not recovery.use(mfa_user, recovery.normalise(old[1]))
    assert post(client, "/account/mfa/app/remove/", password="wrong").status_code == 401
    assert totp.confirmed_device(mfa_user) is not None
    removed = post(client, "/account/mfa/app/remove/", password=PASSWORD)
    assert removed.status_code == 302 and totp.confirmed_device(mfa_user) is None
    assert recovery.remaining(mfa_user) == 0
    browser = Client(enforce_csrf_checks=True)  # the password alone signs in again
    assert login(browser, mfa_user.email, PASSWORD)["Location"] == "/"


@pytest.mark.django_db
def test_the_account_pages_are_for_the_signed_in_user_and_changes_are_posts(client: Client, user) -> None:
    for path in ("/account/mfa/", "/account/mfa/app/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    login(client, user.email, PASSWORD)
    assert client.get("/account/mfa/app/").status_code == 405
    assert client.post("/account/mfa/app/", {"action": "start"}).status_code == 403  # no CSRF token
