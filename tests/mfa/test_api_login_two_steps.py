"""POST /api/login then POST /api/login/mfa: an account with a second factor signs in in two steps.

The contract products and scripts use: the password step answers {"mfa_required": true, "methods":
[...]} and signs nobody in; the second step answers 200 as a sign-in, 401 with the generic error,
429 with Retry-After, 400 for a code that cannot be one; GET /api/session reports `amr` (RFC 8176).
"""
from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client, override_settings

from loginsvc.accounts.authentication import GENERIC_ERROR
from loginsvc.mfa import pending, recovery
from tests.conftest import PASSWORD
from tests.mfa.conftest import app_code, password_step, post_json


@pytest.mark.django_db
def test_the_password_alone_signs_nobody_in(client: Client, mfa_user) -> None:
    response = password_step(client, mfa_user)
    assert response.status_code == 200, response.content
    assert response.json() == {"mfa_required": True, "methods": ["totp"]}
    assert client.get("/api/session").json() == {"authenticated": False}
    recovery.new_set(mfa_user)
    assert password_step(Client(enforce_csrf_checks=True), mfa_user).json()["methods"] == ["totp", "recovery"]


@pytest.mark.django_db
def test_the_app_code_finishes_the_sign_in_with_its_amr(client: Client, mfa_user) -> None:
    password_step(client, mfa_user)
    response = post_json(client, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)})
    assert response.status_code == 200, response.content
    assert response.json() == {"authenticated": True, "email": mfa_user.email}  # no failed attempts to report
    session = client.get("/api/session").json()
    assert session["authenticated"] is True and session["amr"] == ["pwd", "otp", "mfa"]


@pytest.mark.django_db
def test_a_password_only_sign_in_says_pwd(client: Client, user) -> None:
    response = password_step(client, user)
    assert response.json() == {"authenticated": True, "email": user.email}
    assert client.get("/api/session").json()["amr"] == ["pwd"]


@pytest.mark.django_db
def test_rfc6238_5_2_a_code_signs_in_once(mfa_user) -> None:
    code = app_code(mfa_user)
    first, second = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    for browser in (first, second):
        password_step(browser, mfa_user)
    assert post_json(first, "/api/login/mfa", {"method": "totp", "code": code}).status_code == 200
    replay = post_json(second, "/api/login/mfa", {"method": "totp", "code": code})
    assert replay.status_code == 401 and replay.json() == {"error": GENERIC_ERROR}
    assert second.get("/api/session").json() == {"authenticated": False}


@pytest.mark.django_db
def test_a_recovery_code_signs_in_once(mfa_user) -> None:
    codes = recovery.new_set(mfa_user)
    first, second = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    password_step(first, mfa_user)
    assert post_json(first, "/api/login/mfa", {"method": "recovery", "code": codes[0]}).status_code == 200
    assert first.get("/api/session").json()["amr"] == ["pwd", "otp", "mfa"]
    password_step(second, mfa_user)
    assert post_json(second, "/api/login/mfa", {"method": "recovery", "code": codes[0]}).status_code == 401
    assert recovery.remaining(mfa_user) == 9


@pytest.mark.django_db
def test_without_a_password_step_a_code_is_refused_generically(client: Client, mfa_user) -> None:
    response = post_json(client, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)})
    assert response.status_code == 401 and response.json() == {"error": GENERIC_ERROR}


@pytest.mark.django_db
def test_an_expired_waiting_sign_in_is_refused(client: Client, mfa_user) -> None:
    with override_settings(LOGINSVC={**settings.LOGINSVC, "MFA_PENDING_SECONDS": -1}):
        password_step(client, mfa_user)
    response = post_json(client, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)})
    assert response.status_code == 401 and client.get("/api/session").json() == {"authenticated": False}


@pytest.mark.django_db
def test_a_password_changed_between_the_steps_voids_the_first(client: Client, mfa_user) -> None:
    password_step(client, mfa_user)
    mfa_user.set_password("another password for this test")
    mfa_user.save()
    response = post_json(client, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)})
    assert response.status_code == 401
    assert pending.SESSION_KEY not in client.session


@pytest.mark.django_db
def test_someone_elses_session_is_emptied_by_the_password_step(client: Client, mfa_user, django_user_model) -> None:
    other = django_user_model.objects.create_user("other@example.test", PASSWORD)
    assert password_step(client, other).json()["authenticated"] is True
    assert password_step(client, mfa_user).json()["mfa_required"] is True
    assert client.get("/api/session").json() == {"authenticated": False}


@pytest.mark.django_db
def test_wrong_codes_lock_like_wrong_passwords(client: Client, mfa_user) -> None:
    """Each password and each wrong code count for the account and address pair: re-entering the
    password does not buy more guesses."""
    threshold = settings.LOGINSVC["LOCKOUT_THRESHOLD"]
    answers = []
    for attempt in range(threshold):
        if attempt % 3 == 0:
            password_step(client, mfa_user)
        answers.append(post_json(client, "/api/login/mfa", {"method": "totp", "code": "000000"}).status_code)
    assert 429 in answers, answers
    locked = post_json(client, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)})
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
    assert client.get("/api/session").json() == {"authenticated": False}


@pytest.mark.django_db
@pytest.mark.parametrize("body, status, error", [
    ({"method": "totp", "code": "12345a"}, 400, "code must be the six digits the authenticator app shows"),
    ({"method": "totp", "code": 123456}, 400, "code must be the six digits the authenticator app shows"),
    ({"method": "recovery", "code": "short"}, 400, "code must be a recovery code: ten letters and digits"),
    ({"method": "sms", "code": "123456"}, 400, "method must be one of: totp, recovery, email, webauthn"),
    ({"code": "123456"}, 400, "method must be one of: totp, recovery, email, webauthn"),
    ("[1, 2]", 400, "body must be a JSON object"),
    (b"\xff\xfe", 400, "body is not valid UTF-8 JSON"),
])
def test_bad_input_is_a_clear_400_and_signs_nobody_in(client: Client, mfa_user, body, status, error) -> None:
    password_step(client, mfa_user)
    response = post_json(client, "/api/login/mfa", body)
    assert response.status_code == status and response.json()["error"] == error
    assert client.get("/api/session").json() == {"authenticated": False}
    # Nothing was spent: the right code still works.
    assert post_json(client, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)}).status_code == 200


@pytest.mark.django_db
def test_the_second_step_needs_the_csrf_token(client: Client, mfa_user) -> None:
    password_step(client, mfa_user)
    response = client.post("/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)},
                           content_type="application/json")
    assert response.status_code == 403


@pytest.mark.django_db
def test_a_session_key_fixed_before_the_password_is_worth_nothing(client: Client, mfa_user) -> None:
    """ASVS 3.2.1: the key changes when the password is right (the waiting sign-in gets a new one), and
    the second step signs in on that key: made after the password, nobody else can hold it."""
    client.get("/api/session")
    session = client.session
    session["planted"] = True  # a session someone could have planted in this browser
    session.save()
    client.cookies["loginsvc_sid"] = session.session_key
    planted = session.session_key
    password_step(client, mfa_user)
    minted = client.cookies["loginsvc_sid"].value
    assert minted != planted
    response = post_json(client, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)})
    assert response.status_code == 200
    assert client.cookies["loginsvc_sid"].value == minted
    assert client.get("/api/session").json()["authenticated"] is True
    stranger = Client()
    stranger.cookies["loginsvc_sid"] = planted
    assert stranger.get("/api/session").json() == {"authenticated": False}
