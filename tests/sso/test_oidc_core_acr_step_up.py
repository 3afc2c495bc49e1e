"""OpenID Connect Core §2 acr/amr, §3.1.2.1 acr_values, §5.5.1.1 the claims parameter, and products that
require a second factor (require_mfa): who gets a code, who is asked for the second factor first."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client

from loginsvc.mfa import totp
from loginsvc.sso.models import Product as ProductRow
from tests.conftest import PASSWORD, csrf_from, login
from tests.mfa.conftest import app_code, confirm_with_last_step
from tests.sso.conftest import authorize_params, exchange, pkce, redirect_params, register, token
from tests.sso.tokens import introspect, unverified_claims

ESSENTIAL_2 = json.dumps({"id_token": {"acr": {"essential": True, "values": ["2"]}}})


def authorize(client: Client, product, **extra: str):
    verifier, challenge = pkce()
    return client.get("/oidc/authorize/?" + urlencode(authorize_params(product, challenge, **extra))), verifier


def id_token_of(product, response, verifier: str) -> dict:
    code = redirect_params(response)["code"]
    answer = exchange(product, code, verifier)
    assert answer.status_code == 200, answer.content
    return answer.json()


def second_step(client: Client, location: str, code: str):
    """The second step's page, answered as a browser would; returns the redirect after it."""
    assert location.startswith("/login/mfa/?next="), location
    assert client.get(location).status_code == 200
    back = parse_qs(urlsplit(location).query)["next"][0]
    done = client.post("/login/mfa/", {"csrfmiddlewaretoken": csrf_from(client), "method": "totp", "code": code,
                                       "next": back})
    assert done.status_code == 302 and done["Location"] == back, (done.status_code, done.get("Location"))
    return client.get(back)


@pytest.fixture
def webmail(db):
    return register("webmail")


@pytest.fixture
def password_session(client: Client, user) -> Client:
    """Signed in with the password alone (no second factor then); the user adds an app afterwards."""
    assert login(client, user.email, PASSWORD).status_code == 302
    device = totp.start_enrolment(user)
    assert confirm_with_last_step(device)
    return client


@pytest.mark.django_db
def test_2_a_password_sign_in_is_acr_1_and_amr_pwd(signed_in: Client, webmail) -> None:
    response, verifier = authorize(signed_in, webmail)
    tokens = id_token_of(webmail, response, verifier)
    claims = unverified_claims(tokens["id_token"])
    assert (claims["acr"], claims["amr"]) == ("1", ["pwd"])
    refreshed = token(webmail, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    assert (unverified_claims(refreshed["id_token"])["acr"], unverified_claims(refreshed["id_token"])["amr"]) == \
        ("1", ["pwd"])  # a refresh keeps the sign-in's level


@pytest.mark.django_db
@pytest.mark.parametrize("ask", [{"acr_values": "2"}, {"claims": ESSENTIAL_2}, {"acr_values": "3 2"}])
def test_3_1_2_1_asking_for_2_asks_a_password_session_for_the_second_factor(password_session: Client, webmail,
                                                                          user, ask) -> None:
    response, verifier = authorize(password_session, webmail, **ask)
    assert response.status_code == 302
    after = second_step(password_session, response["Location"], app_code(user))
    tokens = id_token_of(webmail, after, verifier)
    claims = unverified_claims(tokens["id_token"])
    assert claims["acr"] == "2" and claims["amr"] == ["pwd", "otp", "mfa"]
    assert password_session.get("/api/session").json()["amr"] == ["pwd", "otp", "mfa"]
    # Userinfo and introspection tell the same of the token's sign-in.
    info = Client().get("/oidc/userinfo/", HTTP_AUTHORIZATION="Bearer " + tokens["access_token"]).json()
    assert (info["acr"], info["amr"]) == ("2", ["pwd", "otp", "mfa"])
    for value in (tokens["access_token"], tokens["refresh_token"]):
        seen = introspect(webmail, value)
        assert (seen["acr"], seen["amr"]) == ("2", ["pwd", "otp", "mfa"]), seen


@pytest.mark.django_db
@pytest.mark.parametrize("ask", [{"acr_values": "1 2"}, {"acr_values": "silver"},
                                 {"claims": json.dumps({"id_token": {"acr": {"values": ["2"]}}})}])
def test_3_1_2_1_any_level_listed_or_a_voluntary_claim_is_met_by_one_factor(password_session: Client, webmail,
                                                                            ask) -> None:
    response, verifier = authorize(password_session, webmail, **ask)
    assert unverified_claims(id_token_of(webmail, response, verifier)["id_token"])["acr"] == "1"


@pytest.mark.django_db
def test_3_1_2_6_prompt_none_needing_a_second_factor_is_interaction_required(password_session: Client,
                                                                            webmail) -> None:
    response, _ = authorize(password_session, webmail, acr_values="2", prompt="none")
    got = redirect_params(response)
    assert got["error"] == "interaction_required" and got["state"] and got["iss"], got


@pytest.mark.django_db
def test_5_5_a_claims_parameter_that_is_not_a_json_object_is_invalid_request(signed_in: Client, webmail) -> None:
    for bad in ("{not json", "[1, 2]", "x" * 5000):
        response, _ = authorize(signed_in, webmail, claims=bad)
        if response.status_code == 302:
            assert redirect_params(response)["error"] == "invalid_request"
        else:  # oauthlib refused it before the redirect: the error page
            assert response.status_code == 400 and b"invalid_request" in response.content, response.content[:300]


@pytest.mark.django_db
def test_a_require_mfa_product_never_gets_a_password_only_code(client: Client, user, webmail) -> None:
    ProductRow.objects.filter(application=webmail.application).update(require_mfa=True)
    assert login(client, user.email, PASSWORD).status_code == 302
    response, verifier = authorize(client, webmail)
    # No second factor yet: the account page, to set one up, then back.
    assert response.status_code == 302 and response["Location"].startswith("/account/mfa/?next=")
    page = client.get(response["Location"])
    assert b'id="mfa-required"' in page.content
    assert authorize(client, webmail, prompt="none")[0]["Location"].count("error=interaction_required") == 1
    device = totp.start_enrolment(user)
    assert confirm_with_last_step(device)
    response, verifier = authorize(client, webmail)
    after = second_step(client, response["Location"], app_code(user))
    assert unverified_claims(id_token_of(webmail, after, verifier)["id_token"])["acr"] == "2"


@pytest.mark.django_db
def test_discovery_names_the_levels(client: Client) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    assert document["acr_values_supported"] == ["1", "2"] and document["claims_parameter_supported"] is True


@pytest.mark.django_db
def test_a_step_up_reports_the_failed_attempts_since_the_last_sign_in(password_session: Client, webmail,
                                                                      user) -> None:
    for _ in range(2):
        assert login(Client(enforce_csrf_checks=True), user.email, "a wrong password").status_code == 401
    response, _ = authorize(password_session, webmail, acr_values="2")
    location = response["Location"]
    assert password_session.get(location).status_code == 200
    done = password_session.post("/login/mfa/", {"csrfmiddlewaretoken": csrf_from(password_session),
                                                 "method": "totp", "code": app_code(user),
                                                 "next": parse_qs(urlsplit(location).query)["next"][0]})
    assert done["Location"] == "/"  # the notice first, then on to the product
    assert "2 failed attempts since your last sign-in" in password_session.get("/").content.decode()
