"""Passkeys in-process, against W3C WebAuthn Level 3 §7.1 (registering) and §7.2 (verifying an assertion).

A software authenticator (authenticator.py) answers the real endpoints; each test bends one field
and proves that check. The same flows through real nodes, the router and Chromium's virtual
authenticator are in test_passkeys_browser.py.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from django.test import Client

from loginsvc.accounts import sessions
from loginsvc.mfa import passkeys
from loginsvc.mfa.models import Passkey, PasskeyChallenge, RecoveryCode
from loginsvc.observability.metrics import PASSKEY_COUNTER_REGRESSIONS
from tests.conftest import PASSWORD, csrf_from, login
from tests.mfa.authenticator import UP, SoftAuthenticator
from tests.mfa.conftest import password_step, post_json

pytestmark = pytest.mark.django_db


def options(client: Client, purpose: str) -> dict[str, Any]:
    response = post_json(client, "/api/passkey/options", {"purpose": purpose})
    assert response.status_code == 200, response.content
    return response.json()


def register(client: Client, key: SoftAuthenticator, name: str = "My laptop", **bend: Any) -> Any:
    answer = key.create(options(client, "register"), **bend)
    return post_json(client, "/api/passkey/register", {"credential": answer, "name": name})


def signed_in(client: Client, user: Any) -> Client:
    assert login(client, user.email, PASSWORD).status_code == 302
    return client


def sign_in(client: Client, key: SoftAuthenticator, **bend: Any) -> Any:
    answer = key.get(options(client, "sign-in"), **bend)
    return post_json(client, "/api/passkey/sign-in", {"credential": answer, "next": ""})


@pytest.fixture
def key(user: Any) -> SoftAuthenticator:
    """A passkey registered on the suite's user from a signed-in browser."""
    authenticator = SoftAuthenticator()
    assert register(signed_in(Client(enforce_csrf_checks=True), user), authenticator).status_code == 201
    return authenticator


def test_7_1_creation_options_ask_for_a_discoverable_verified_credential_without_attestation(client: Client, user: Any) -> None:
    created = options(signed_in(client, user), "register")
    assert created["rp"]["id"] == "localhost" and created["attestation"] == "none"
    assert created["authenticatorSelection"]["userVerification"] == "required"
    assert created["authenticatorSelection"]["residentKey"] == "preferred"
    assert user.email not in json.dumps(created["user"]["id"])  # the user handle is not the address
    assert created["user"]["name"] == user.email and len(created["challenge"]) >= 43


def test_7_1_registration_keeps_the_key_its_flags_and_shows_recovery_codes_once(client: Client, user: Any) -> None:
    signed_in(client, user)
    response = register(client, SoftAuthenticator(synced=True), name="  Phone\x00 of Ann  ")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Phone of Ann" and len(body["recovery_codes"]) == 10
    passkey = Passkey.objects.get(user=user)
    assert passkey.backup_eligible and passkey.backed_up and passkey.transports == "internal"
    assert RecoveryCode.objects.filter(user=user).count() == 10
    second = register(client, SoftAuthenticator(), name="")
    assert second.status_code == 201 and "recovery_codes" not in second.json()  # not the first factor
    assert second.json()["name"] == "Passkey"
    page = client.get("/account/mfa/").content.decode()
    assert "Phone of Ann" in page and "Synced to your other devices" in page and "On this one device only" in page


def test_7_1_registration_needs_a_signed_in_browser(client: Client, user: Any) -> None:
    response = post_json(client, "/api/passkey/options", {"purpose": "register"})
    assert response.status_code == 401


@pytest.mark.parametrize("bend, problem", [
    ({"origin": "https://evil.example"}, "origin"),
    ({"rp_id": "example.com"}, "RP ID"),
    ({"flags": UP}, "verif"),
])
def test_7_1_steps_9_13_16_a_wrong_origin_rp_id_or_missing_verification_is_refused(
        client: Client, user: Any, bend: dict[str, Any], problem: str) -> None:
    response = register(signed_in(client, user), SoftAuthenticator(), **bend)
    assert response.status_code == 400 and problem.lower() in response.json()["error"].lower()
    assert not Passkey.objects.exists()


def test_7_1_a_challenge_works_once(client: Client, user: Any) -> None:
    signed_in(client, user)
    key = SoftAuthenticator()
    answer = key.create(options(client, "register"))
    assert post_json(client, "/api/passkey/register", {"credential": answer, "name": "a"}).status_code == 201
    again = post_json(client, "/api/passkey/register", {"credential": answer, "name": "b"})
    assert again.status_code == 400 and "start again" in again.json()["error"]
    assert Passkey.objects.count() == 1 and not PasskeyChallenge.objects.exists()


def test_7_2_sign_in_with_a_passkey_and_no_email(key: SoftAuthenticator, user: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    request_options = options(browser, "sign-in")
    assert request_options["allowCredentials"] == [] and request_options["userVerification"] == "required"
    response = post_json(browser, "/api/passkey/sign-in", {"credential": key.get(request_options), "next": "/account/mfa/"})
    assert response.status_code == 200, response.content
    assert response.json()["email"] == user.email and response.json()["redirect"] == "/account/mfa/"
    session = browser.get("/api/session").json()
    assert session["email"] == user.email and session["amr"] == ["hwk", "user", "mfa"]
    assert Passkey.objects.get().sign_count == 1 and Passkey.objects.get().last_used is not None


def test_7_2_a_synced_passkey_is_a_software_key(user: Any) -> None:
    synced = SoftAuthenticator(synced=True)
    assert register(signed_in(Client(enforce_csrf_checks=True), user), synced).status_code == 201
    browser = Client(enforce_csrf_checks=True)
    assert sign_in(browser, synced).status_code == 200
    assert browser.get("/api/session").json()["amr"] == ["swk", "user", "mfa"]


def test_7_2_a_replayed_assertion_is_refused(key: SoftAuthenticator) -> None:
    browser = Client(enforce_csrf_checks=True)
    answer = key.get(options(browser, "sign-in"))
    assert post_json(browser, "/api/passkey/sign-in", {"credential": answer}).status_code == 200
    again = post_json(browser, "/api/passkey/sign-in", {"credential": answer})
    assert again.status_code == 401 and "start again" in again.json()["detail"]  # its challenge is spent
    thief = Client(enforce_csrf_checks=True)
    options(thief, "sign-in")  # a ceremony of its own, whose challenge the old answer does not carry
    replayed = post_json(thief, "/api/passkey/sign-in", {"credential": answer})
    assert replayed.status_code == 401 and "start again" in replayed.json()["detail"]
    assert thief.get("/api/session").json() == {"authenticated": False}


def test_a_ceremony_is_bound_to_the_browser_that_started_it(key: SoftAuthenticator) -> None:
    """An answer to one browser's challenge, sent from another browser (another CSRF secret), finds no
    ceremony; the first browser can still finish it."""
    owner, other = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    answer = key.get(options(owner, "sign-in"))
    csrf_from(other)
    stolen = post_json(other, "/api/passkey/sign-in", {"credential": answer})
    assert stolen.status_code == 401 and other.get("/api/session").json() == {"authenticated": False}
    assert post_json(owner, "/api/passkey/sign-in", {"credential": answer}).status_code == 200


def test_starting_a_sign_in_ceremony_writes_no_session(client: Client, key: SoftAuthenticator) -> None:
    options(client, "sign-in")
    assert "loginsvc_sid" not in client.cookies and PasskeyChallenge.objects.count() == 1


def test_starting_ceremonies_is_limited_per_network(settings: Any) -> None:
    """Anyone may start one and each writes a challenge row: beyond the network's budget, 429 and no row."""
    settings.LOGINSVC = dict(settings.LOGINSVC, PASSKEY_OPTIONS_IP_REQUESTS=3)
    answers = [post_json(Client(enforce_csrf_checks=True), "/api/passkey/options", {"purpose": "sign-in"})
               for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert 0 < int(answers[-1]["Retry-After"]) <= 60 and answers[-1].json()["retry_after"] == int(answers[-1]["Retry-After"])
    assert "network" in answers[-1].json()["detail"] and PasskeyChallenge.objects.count() == 3
    elsewhere = Client(enforce_csrf_checks=True, REMOTE_ADDR="203.0.113.9")
    assert post_json(elsewhere, "/api/passkey/options", {"purpose": "sign-in"}).status_code == 200


@pytest.mark.parametrize("bend, problem", [
    ({"origin": "http://localhost:9999"}, "origin"),
    ({"rp_id": "example.com"}, "rp id"),
    ({"flags": UP}, "verif"),
])
def test_7_2_steps_12_15_17_wrong_origin_rp_id_or_no_verification_sign_in_nobody(
        key: SoftAuthenticator, bend: dict[str, Any], problem: str) -> None:
    browser = Client(enforce_csrf_checks=True)
    response = sign_in(browser, key, **bend)
    assert response.status_code == 401 and problem in response.json()["detail"].lower()
    assert browser.get("/api/session").json() == {"authenticated": False}


def test_7_2_step_22_a_counter_that_goes_back_is_refused_audited_and_alerted(
        key: SoftAuthenticator, caplog: pytest.LogCaptureFixture) -> None:
    assert sign_in(Client(enforce_csrf_checks=True), key).status_code == 200  # counter 1
    assert sign_in(Client(enforce_csrf_checks=True), key).status_code == 200  # counter 2
    before = PASSKEY_COUNTER_REGRESSIONS.labels("api")._value.get()
    browser = Client(enforce_csrf_checks=True)
    with caplog.at_level(logging.ERROR, logger="loginsvc.audit"):
        response = sign_in(browser, key, count=2)  # a copy of the key, one use behind
    assert response.status_code == 401 and "copied" in response.json()["detail"]
    assert browser.get("/api/session").json() == {"authenticated": False}
    assert PASSKEY_COUNTER_REGRESSIONS.labels("api")._value.get() == before + 1
    assert [r for r in caplog.records if "counter went back" in r.getMessage() and r.seen_count == 2]
    assert Passkey.objects.get().sign_count == 2


def test_7_2_a_passkey_without_a_counter_signs_in_each_time(user: Any) -> None:
    key = SoftAuthenticator()
    assert register(signed_in(Client(enforce_csrf_checks=True), user), key).status_code == 201
    for _ in range(2):
        assert sign_in(Client(enforce_csrf_checks=True), key, count=0).status_code == 200


def test_7_2_step_21_a_signature_by_another_key_is_refused(key: SoftAuthenticator) -> None:
    forger = SoftAuthenticator()
    forger.credential_id, forger.user_handle = key.credential_id, key.user_handle  # the id is no secret
    response = sign_in(Client(enforce_csrf_checks=True), forger)
    assert response.status_code == 401 and "signature" in response.json()["detail"].lower()
    assert Passkey.objects.get().sign_count == 0


def test_a_passkey_as_the_second_factor_after_the_password(key: SoftAuthenticator, user: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    first = password_step(browser, user)
    assert first.json() == {"mfa_required": True, "methods": ["recovery", "webauthn"]}
    answer = key.get(options(browser, "second-step"))
    response = post_json(browser, "/api/login/mfa", {"method": "webauthn", "credential": answer})
    assert response.status_code == 200 and response.json()["email"] == user.email
    assert browser.get("/api/session").json()["amr"] == ["pwd", "hwk", "user", "mfa"]


def test_the_second_step_takes_only_the_accounts_own_passkey(key: SoftAuthenticator, user: Any,
                                                              django_user_model: Any) -> None:
    other = django_user_model.objects.create_user("other@example.test", PASSWORD)
    stranger = SoftAuthenticator()
    assert register(signed_in(Client(enforce_csrf_checks=True), other), stranger).status_code == 201
    browser = Client(enforce_csrf_checks=True)
    password_step(browser, user)
    request_options = options(browser, "second-step")
    assert [c["id"] for c in request_options["allowCredentials"]] == [key.id]
    response = post_json(browser, "/api/login/mfa", {"method": "webauthn", "credential": stranger.get(request_options)})
    assert response.status_code == 401 and browser.get("/api/session").json() == {"authenticated": False}


def test_a_second_step_ceremony_needs_a_waiting_sign_in(client: Client, key: SoftAuthenticator) -> None:
    response = post_json(client, "/api/passkey/options", {"purpose": "second-step"})
    assert response.status_code == 401


@pytest.mark.parametrize("body, status", [
    (b"\xff\xfe not utf-8", 400),
    ("[1, 2]", 400),
    ({"credential": "a string"}, 400),
    ({"credential": {}}, 401),
    ({"credential": "a registered id"}, 401),
    ({"credential": {"id": "x" * 5000, "response": {}}}, 401),
    ({"credential": {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"clientDataJSON": "%%%"}}}, 401),
])
def test_malformed_answers_get_a_clear_4xx_and_sign_in_nobody(key: SoftAuthenticator, body: Any, status: int) -> None:
    browser = Client(enforce_csrf_checks=True)
    options(browser, "sign-in")
    if isinstance(body, dict) and body.get("credential") == "a registered id":
        body = {"credential": {"id": key.id, "rawId": key.id, "type": "public-key", "response": "not an object"}}
    response = post_json(browser, "/api/passkey/sign-in", body)
    assert response.status_code == status and "error" in response.json()
    assert browser.get("/api/session").json() == {"authenticated": False}


def test_an_oversized_attestation_is_refused(client: Client, user: Any) -> None:
    signed_in(client, user)
    answer = SoftAuthenticator().create(options(client, "register"))
    answer["response"]["attestationObject"] += "A" * 70000
    response = post_json(client, "/api/passkey/register", {"credential": answer, "name": "big"})
    assert response.status_code == 413 and not Passkey.objects.exists()


def test_an_expired_ceremony_is_refused(key: SoftAuthenticator, settings: Any) -> None:
    settings.LOGINSVC = {**settings.LOGINSVC, "WEBAUTHN_CHALLENGE_SECONDS": 1}
    browser = Client(enforce_csrf_checks=True)
    answer = key.get(options(browser, "sign-in"))
    time.sleep(1.1)
    response = post_json(browser, "/api/passkey/sign-in", {"credential": answer})
    assert response.status_code == 401 and "start again" in response.json()["detail"]


def test_removing_a_passkey_asks_for_the_password(user: Any, key: SoftAuthenticator) -> None:
    browser = Client(enforce_csrf_checks=True)
    assert sign_in(browser, key).status_code == 200
    passkey = Passkey.objects.get()
    url = f"/account/mfa/passkeys/{passkey.pk}/remove/"
    wrong = browser.post(url, {"password": "not it", "csrfmiddlewaretoken": csrf_from(browser)})
    assert wrong.status_code == 401 and Passkey.objects.exists()
    right = browser.post(url, {"password": PASSWORD, "csrfmiddlewaretoken": csrf_from(browser)})
    assert right.status_code == 302 and not Passkey.objects.exists()
    assert not RecoveryCode.objects.filter(user=user).exists()  # no factor left: the codes stood in for it
    assert sign_in(Client(enforce_csrf_checks=True), key).status_code == 401


def test_the_page_script_comes_from_this_origin(client: Client) -> None:
    response = client.get("/scripts/passkeys.js")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/javascript")
    assert b"navigator.credentials.get" in response.content and b"mediation" in response.content


def test_adding_a_passkey_long_after_signing_in_asks_for_the_password(client: Client, user: Any) -> None:
    """A new passkey is a way in without the password: a stolen session alone must not add one."""
    signed_in(client, user)
    session = client.session
    session[sessions.AUTH_TIME] -= passkeys.REAUTH_SECONDS + 1  # signed in more than five minutes ago
    session.save()
    assert "passkey-password" in client.get("/account/mfa/").content.decode()
    asked = post_json(client, "/api/passkey/options", {"purpose": "register"})
    assert asked.status_code == 401 and asked.json()["error"] == "password required"
    wrong = post_json(client, "/api/passkey/options", {"purpose": "register", "password": "not it"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "That password is not correct."
    right = post_json(client, "/api/passkey/options", {"purpose": "register", "password": PASSWORD})
    assert right.status_code == 200 and right.json()["rp"]["id"] == "localhost"


def test_an_app_added_after_a_passkey_keeps_the_recovery_codes_the_user_holds(user: Any, key: SoftAuthenticator) -> None:
    from tests.mfa.conftest import app_code

    kept = set(RecoveryCode.objects.filter(user=user).values_list("digest", flat=True))
    assert len(kept) == 10  # made with the passkey, the account's first factor
    browser = Client(enforce_csrf_checks=True)
    assert sign_in(browser, key).status_code == 200
    token = csrf_from(browser)
    assert browser.post("/account/mfa/app/", {"action": "start", "csrfmiddlewaretoken": token}).status_code == 200
    added = browser.post("/account/mfa/app/", {"action": "confirm", "code": app_code(user),
                                                "csrfmiddlewaretoken": token})
    assert added.status_code == 302 and added["Location"] == "/account/mfa/"
    assert set(RecoveryCode.objects.filter(user=user).values_list("digest", flat=True)) == kept
