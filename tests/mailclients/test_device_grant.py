"""The device authorization grant (RFC 8628) for mail clients without a browser: the device's request, the person's
answer at /device, the device's polls, and every way they go wrong, in process. A real Dovecot taking the grant's
token, and the page in headless Chromium, are in test_dovecot.py."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from loginsvc.sso import device
from tests.conftest import PASSWORD, csrf_from, login
from tests.mailclients import oauth
from tests.mailclients.test_mail_tokens import DOVECOT, introspect
from tests.sso.conftest import register

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE = "openid mail offline_access"


@pytest.fixture
def mail_products(db: None) -> None:
    register("dovecot")
    register("webmail")
    oauth.register()


def authorize(client_id: str = oauth.CLIENT_ID, **extra: str) -> Any:
    """RFC 8628 §3.1: a form, as a device sends it."""
    return Client().post("/oidc/device-authorization/", urlencode({"client_id": client_id, "scope": SCOPE, **extra}),
                         content_type="application/x-www-form-urlencoded")


def poll(device_code: str, client_id: str = oauth.CLIENT_ID) -> Any:
    return Client().post("/oidc/token/", {"grant_type": GRANT, "device_code": device_code, "client_id": client_id})


def signed_in(user: Any) -> Client:
    browser = Client(enforce_csrf_checks=True)
    assert login(browser, user.email, PASSWORD).status_code == 302
    return browser


def answer(browser: Client, user_code: str, action: str) -> Any:
    return browser.post("/device", {"user_code": user_code, "action": action,
                                    "csrfmiddlewaretoken": csrf_from(browser)})


def wait_interval() -> None:
    """As if the device had waited its interval since the last poll."""
    from oauth2_provider.models import DeviceGrant

    DeviceGrant.objects.update(last_checked=timezone.now() - timedelta(seconds=6))


@pytest.mark.django_db
def test_rfc8628_3_2_the_answer_has_both_codes_the_address_and_the_interval(mail_products: None) -> None:
    response = authorize()
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"   # as the token endpoint's
    body = response.json()
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", body["user_code"])
    assert body["verification_uri"].endswith("/device")
    assert body["verification_uri_complete"] == body["verification_uri"] + "?user_code=" + body["user_code"].replace("-", "")
    assert body["expires_in"] == 600 and body["interval"] == 5 and len(body["device_code"]) >= 30
    assert set(body["scope"].split()) == set(SCOPE.split())


@pytest.mark.django_db
def test_rfc8628_3_4_a_person_allows_the_device_and_its_next_poll_gets_mail_tokens(user: Any, mail_products: None) -> None:
    started = authorize().json()
    assert poll(started["device_code"]).json()["error"] == "authorization_pending"
    browser = signed_in(user)
    page = browser.get("/device?user_code=" + started["user_code"].replace("-", ""))
    assert page.status_code == 200 and started["user_code"].replace("-", "").encode() in page.content
    shown = answer(browser, started["user_code"].lower(), "check")  # typed in lower case, with the dash
    assert shown.status_code == 200 and b"Allow Mail app?" in shown.content
    assert started["user_code"].encode() in shown.content and b"Read and send your mail" in shown.content
    decided = answer(browser, started["user_code"], "allow")
    assert decided.status_code == 200 and b"The device is signed in" in decided.content

    tokens = poll(started["device_code"])
    assert tokens.status_code == 200, tokens.content
    got = tokens.json()
    assert set(got["scope"].split()) == set(SCOPE.split()) and got["refresh_token"]
    seen = introspect(DOVECOT, got["access_token"])
    assert seen["active"] is True and seen["username"] == user.email
    assert poll(started["device_code"]).json()["error"] == "invalid_grant"   # spent with the tokens

    mail_clients = browser.get("/api/sessions").json()["mail_clients"]
    assert [(c["kind"], c["name"]) for c in mail_clients] == [("oauth", "Mail app")]


@pytest.mark.django_db
def test_rfc8628_3_5_slow_down_refused_and_expired(user: Any, mail_products: None) -> None:
    started = authorize().json()
    assert poll(started["device_code"]).json()["error"] == "authorization_pending"
    assert poll(started["device_code"]).json()["error"] == "slow_down"
    wait_interval()
    assert poll(started["device_code"]).json()["error"] == "authorization_pending"

    assert answer(signed_in(user), started["user_code"], "refuse").status_code == 200
    refused = poll(started["device_code"])
    assert refused.status_code == 400 and refused.json()["error"] == "access_denied"

    late = authorize().json()
    from oauth2_provider.models import DeviceGrant

    DeviceGrant.objects.filter(device_code=late["device_code"]).update(expires=timezone.now() - timedelta(seconds=1))
    assert poll(late["device_code"]).json()["error"] == "expired_token"
    assert answer(signed_in(user), late["user_code"], "check").status_code == 400   # no longer waiting

    allowed_late = authorize().json()   # allowed in time, collected too late
    answer(signed_in(user), allowed_late["user_code"], "allow")
    DeviceGrant.objects.filter(device_code=allowed_late["device_code"]).update(
        expires=timezone.now() - timedelta(seconds=1))
    assert poll(allowed_late["device_code"]).json()["error"] == "expired_token"


@pytest.mark.django_db
def test_rfc8628_3_5_signing_out_of_the_browser_that_allowed_it_ends_the_device_tokens(user: Any,
                                                                                        mail_products: None) -> None:
    started = authorize().json()
    browser = signed_in(user)
    answer(browser, started["user_code"], "allow")
    got = poll(started["device_code"]).json()
    assert browser.post("/logout/", {"csrfmiddlewaretoken": csrf_from(browser)}).status_code in (200, 302)
    assert introspect(DOVECOT, got["access_token"]) == {"active": False}
    refreshed = Client().post("/oidc/token/", {"grant_type": "refresh_token", "refresh_token": got["refresh_token"],
                                               "client_id": oauth.CLIENT_ID})
    assert refreshed.json()["error"] == "invalid_grant"


@pytest.mark.django_db
def test_a_product_that_requires_mfa_sends_a_password_only_session_through_its_second_factor(
        user: Any, mail_products: None) -> None:
    import pyotp

    from loginsvc.mfa import totp
    from loginsvc.sso.models import Product

    from oauth2_provider.models import Application

    Product.objects.update_or_create(application=Application.objects.get(client_id=oauth.CLIENT_ID),
                                     defaults={"require_mfa": True})
    secret = totp.secret_of(totp.enrol_confirmed(user, pyotp.random_base32(32)))
    started = authorize().json()
    browser = Client(enforce_csrf_checks=True)
    assert login(browser, user.email, PASSWORD).status_code == 302          # the password: the second step is due
    code = pyotp.TOTP(secret).now()
    assert browser.post("/api/login/mfa", {"method": "totp", "code": code}, content_type="application/json",
                        HTTP_X_CSRFTOKEN=csrf_from(browser)).status_code == 200
    assert answer(browser, started["user_code"], "allow").status_code == 200  # multi-factor: allowed at once
    assert poll(started["device_code"]).status_code == 200

    other = authorize().json()
    password_only = Client(enforce_csrf_checks=True)
    from loginsvc.accounts.models import User

    User.objects.create_user("pat@example.test", PASSWORD)
    assert login(password_only, "pat@example.test", PASSWORD).status_code == 302
    sent = answer(password_only, other["user_code"], "allow")
    assert sent.status_code == 302 and sent["Location"].startswith("/account/mfa/?next=%2Fdevice%3Fuser_code%3D")
    assert poll(other["device_code"]).json()["error"] == "authorization_pending"


@pytest.mark.django_db
def test_rfc8628_5_4_a_code_is_decided_once_even_from_two_browsers(user: Any, mail_products: None) -> None:
    from loginsvc.accounts.models import User

    other = User.objects.create_user("bob@example.test", PASSWORD)
    started = authorize().json()
    assert answer(signed_in(user), started["user_code"], "allow").status_code == 200
    late = answer(signed_in(other), started["user_code"], "allow")
    assert late.status_code == 400 and b"not waiting" in late.content
    assert poll(started["device_code"]).status_code == 200


@pytest.mark.django_db
def test_rfc8628_5_1_wrong_user_codes_count_like_wrong_passwords(user: Any, mail_products: None) -> None:
    authorize()
    browser = signed_in(user)
    statuses = [answer(browser, "BCDF-GHJK", "check").status_code for _ in range(12)]
    assert statuses[0] == 400 and statuses[-1] == 429, statuses
    locked = answer(browser, "BCDF-GHJK", "check")
    assert int(locked["Retry-After"]) > 0 and b"Too many wrong codes" in locked.content


@pytest.mark.django_db
def test_rfc6749_5_2_only_mail_clients_may_use_the_device_grant(user: Any, mail_products: None) -> None:
    refused = authorize("webmail", client_secret="x")
    assert refused.status_code in (400, 401) and refused.json()["error"] in ("unauthorized_client", "invalid_client")
    from tests.sso.conftest import SECRET

    refused = authorize("webmail", client_secret=SECRET, scope="openid")
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    from oauth2_provider.models import DeviceGrant

    assert not DeviceGrant.objects.exists()
    wrong_client = Client().post("/oidc/token/", {"grant_type": GRANT, "device_code": "x" * 40, "client_id": "webmail",
                                                  "client_secret": SECRET})
    assert wrong_client.status_code == 400 and wrong_client.json()["error"] == "unauthorized_client"


@pytest.mark.parametrize("form, error", [
    ({"grant_type": GRANT, "client_id": oauth.CLIENT_ID}, "invalid_request"),               # no device_code
    ({"grant_type": GRANT, "client_id": oauth.CLIENT_ID, "device_code": "nope"}, "invalid_grant"),
    ({"grant_type": GRANT, "client_id": oauth.CLIENT_ID, "device_code": "a\x00b"}, "invalid_request"),
    ({"grant_type": GRANT, "device_code": "nope"}, "invalid_client"),                        # no client
])
@pytest.mark.django_db
def test_bad_polls_get_a_clear_error(mail_products: None, form: dict[str, str], error: str) -> None:
    response = Client().post("/oidc/token/", form)
    assert response.status_code in (400, 401) and response.json()["error"] == error, response.content


@pytest.mark.parametrize("typed", ["", "BCDF", "AEIOU123", "é" * 8, "BCDF-GHJK-LMNP", "x\x00y"])
@pytest.mark.django_db
def test_the_page_refuses_what_cannot_be_a_code(user: Any, mail_products: None, typed: str) -> None:
    response = answer(signed_in(user), typed, "allow")
    assert response.status_code == 400 and b"not waiting" in response.content


@pytest.mark.django_db
def test_the_page_is_for_signed_in_people_and_checks_csrf(user: Any, mail_products: None) -> None:
    anonymous = Client().get("/device?user_code=BCDFGHJK")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/?next=/device")
    browser = signed_in(user)
    started = authorize().json()
    forged = browser.post("/device", {"user_code": started["user_code"], "action": "allow"})
    assert forged.status_code == 403
    assert poll(started["device_code"]).json()["error"] == "authorization_pending"


def test_user_codes_normalise_as_people_type_them() -> None:
    code = device.user_code()
    assert device.normalise(device.display(code).lower()) == code
    assert device.normalise(" " + code[:4] + " - " + code[4:] + " ") == code
    assert device.normalise(code + "B") is None and device.normalise("0" * 8) is None


@pytest.mark.django_db
def test_rfc8628_5_2_one_network_starts_a_bounded_number_of_device_authorizations(mail_products: None,
                                                                                  settings: Any) -> None:
    settings.LOGINSVC = {**settings.LOGINSVC, "DEVICE_IP_REQUESTS": 2}
    assert [authorize().status_code for _ in range(2)] == [200, 200]
    refused = authorize()
    assert refused.status_code == 429 and refused.json()["error"] == "slow_down" and int(refused["Retry-After"]) > 0
    from oauth2_provider.models import DeviceGrant

    assert DeviceGrant.objects.count() == 2


@pytest.mark.django_db
def test_two_grants_never_wait_under_one_user_code(user: Any, mail_products: None) -> None:
    """A code another grant waits under is replaced; should two nodes still make the same one at once, the page
    allows neither (the person could not tell which device they allow)."""
    from oauth2_provider.models import DeviceGrant

    first = device.create(oauth.CLIENT_ID, "d" * 40, "BCDFGHJK", "mail")
    second = device.create(oauth.CLIENT_ID, "e" * 40, "BCDFGHJK", "mail")
    assert first.user_code == "BCDFGHJK" and second.user_code != "BCDFGHJK" and device.normalise(second.user_code)
    DeviceGrant.objects.filter(pk=second.pk).update(user_code="BCDFGHJK")
    assert device.waiting("BCDFGHJK") is None
    assert answer(signed_in(user), "BCDF-GHJK", "allow").status_code == 400
    assert not DeviceGrant.objects.exclude(status=DeviceGrant.AUTHORIZATION_PENDING).exists()


@pytest.mark.parametrize("path, form", [
    ("/oidc/device-authorization/?client_id=mail-client", {"scope": "openid"}),           # the query string
    ("/oidc/device-authorization/", {"client_id": ["mail-client", "webmail"]}),             # said twice
])
@pytest.mark.django_db
def test_rfc6749_3_1_device_authorization_parameters_are_in_the_body_once(mail_products: None, path: str,
                                                                          form: dict[str, Any]) -> None:
    response = Client().post(path, urlencode(form, doseq=True), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


@pytest.mark.django_db
def test_rfc8628_5_1_a_code_of_ones_own_does_not_reset_the_count_of_wrong_ones(user: Any, mail_products: None) -> None:
    browser = signed_in(user)
    wrong = 0
    while answer(browser, "BCDF-GHJK", "check").status_code == 400:
        wrong += 1
        assert wrong < 50
    from loginsvc.accounts.models import User

    other = User.objects.create_user("una@example.test", PASSWORD)
    browser = signed_in(other)
    for index in range(wrong - 1):
        assert answer(browser, "BCDF-GHJK", "check").status_code == 400, (index, wrong)
    own = authorize().json()["user_code"]
    assert answer(browser, own, "check").status_code == 200      # a right code: given back, nothing forgotten
    statuses = [answer(browser, "BCDF-GHJK", "check").status_code for _ in range(2)]
    assert 429 in statuses, statuses   # forgetting the failures would have left room for `wrong` more


@pytest.mark.django_db
def test_a_grant_whose_product_was_removed_is_not_waiting(user: Any, mail_products: None) -> None:
    from oauth2_provider.models import Application

    started = authorize().json()
    Application.objects.filter(client_id=oauth.CLIENT_ID).delete()
    for action in ("check", "allow"):
        assert answer(signed_in(user), started["user_code"], action).status_code == 400
