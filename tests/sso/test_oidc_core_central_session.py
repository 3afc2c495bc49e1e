"""OpenID Connect Core §3.1.2.1-3.1.2.6 against the central session: SSO without a password, prompt=none
(login_required / consent_required), prompt=login and max_age (re-authentication), the session's lifetimes,
and the login page with its throttle as the only way to authenticate."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.sessions.models import Session
from django.test import Client, override_settings
from django.utils import timezone

from loginsvc.accounts.authentication import GENERIC_ERROR
from tests import plugin
from tests.conftest import PASSWORD, login
from tests.sso.conftest import ISSUER, Product, authorize, authorize_params, pkce, redirect_params, register
from tests.sso.tokens import age_login, verify_id_token


def login_page_next(response) -> str:
    """The `next` of a redirect to our login page (asserting it is one): where the login returns to."""
    assert response.status_code == 302, (response.status_code, response.content[:200])
    parts = urlsplit(response["Location"])
    assert parts.path == "/login/" and not parts.netloc, response["Location"]
    return parse_qs(parts.query)["next"][0]


def sign_in_through(browser: Client, response, password: str = PASSWORD, email: str = "ann.example@example.test"):
    """Follow a redirect to the login page, submit it, and return the answer of the authorize URL it returns to."""
    back = login_page_next(response)
    page = browser.get(response["Location"])
    assert page.status_code == 200 and b'name="password"' in page.content
    posted = login(browser, email, password, next=back)
    assert posted.status_code == 302 and posted["Location"] == back, posted.get("Location")
    return browser.get(back)


def code_and_claims(browser: Client, product: Product, response, verifier: str) -> dict:
    from tests.sso.conftest import exchange

    got = redirect_params(response)
    assert "code" in got, got
    tokens = exchange(product, got["code"], verifier)
    assert tokens.status_code == 200
    return verify_id_token(tokens.json()["id_token"], product)[1]


# --- single sign-on ---------------------------------------------------------------------------------------
def test_anonymous_request_goes_to_our_login_page_and_back(client: Client, product: Product, user) -> None:
    verifier, challenge = pkce()
    first = authorize(client, product, challenge)
    assert urlsplit(login_page_next(first)).path == "/oidc/authorize/"
    claims = code_and_claims(client, product, sign_in_through(client, first), verifier)
    assert claims["aud"] == product.client_id


def test_second_product_gets_its_code_silently(signed_in: Client, product: Product) -> None:
    other = register("admin-portal")
    for each in (product, other):
        verifier, challenge = pkce()
        response = authorize(signed_in, each, challenge)
        assert response["Location"].startswith(each.redirect_uri + "?")
        assert "code" in redirect_params(response)


# --- prompt=none ------------------------------------------------------------------------------------------
def test_3_1_2_6_prompt_none_without_a_session_is_login_required_never_a_login_page(client: Client,
                                                                                   product: Product) -> None:
    _verifier, challenge = pkce()
    params = authorize_params(product, challenge, prompt="none")
    response = client.get("/oidc/authorize/?" + urlencode(params))
    assert response["Location"].startswith(product.redirect_uri + "?")
    got = redirect_params(response)
    assert got == {"error": "login_required", "state": params["state"], "iss": ISSUER}


def test_3_1_2_6_prompt_none_with_a_session_is_a_code(signed_in: Client, product: Product) -> None:
    _verifier, challenge = pkce()
    got = redirect_params(authorize(signed_in, product, challenge, prompt="none"))
    assert "code" in got and got["iss"] == ISSUER


def test_3_1_2_6_prompt_none_without_consent_is_consent_required(signed_in: Client) -> None:
    third_party = register("partner", first_party=False)
    _verifier, challenge = pkce()
    params = authorize_params(third_party, challenge, prompt="none")
    got = redirect_params(signed_in.get("/oidc/authorize/?" + urlencode(params)))
    assert got["error"] == "consent_required" and got["state"] == params["state"] and got["iss"] == ISSUER
    # Without prompt=none the consent page is shown instead.
    page = authorize(signed_in, third_party, challenge)
    assert page.status_code == 200 and b"Allow" in page.content


def test_3_1_2_6_prompt_none_with_too_old_a_login_is_login_required(signed_in: Client, product: Product) -> None:
    age_login(signed_in, 100)
    _verifier, challenge = pkce()
    got = redirect_params(authorize(signed_in, product, challenge, prompt="none", max_age="10"))
    assert got["error"] == "login_required"


@pytest.mark.parametrize("prompt", ["none login", "none consent"])
def test_3_1_2_1_prompt_none_with_another_value_is_invalid_request(signed_in: Client, product: Product,
                                                                  prompt: str) -> None:
    _verifier, challenge = pkce()
    got = redirect_params(authorize(signed_in, product, challenge, prompt=prompt))
    assert got["error"] == "invalid_request" and "code" not in got


# --- prompt=login and max_age -----------------------------------------------------------------------------
def test_3_1_2_1_prompt_login_asks_again_even_when_signed_in(signed_in: Client, product: Product) -> None:
    old = age_login(signed_in, 100)
    sid_before = signed_in.session.get("_sso_sid")
    verifier, challenge = pkce()
    first = authorize(signed_in, product, challenge, prompt="login")
    back = login_page_next(first)
    assert "prompt" not in parse_qs(urlsplit(back).query)  # coming back must not ask again
    assert parse_qs(urlsplit(first["Location"]).query)["reauth"] == ["1"]
    claims = code_and_claims(signed_in, product, sign_in_through(signed_in, first), verifier)
    assert claims["auth_time"] > old
    assert sid_before is None or claims["sid"] == sid_before


@pytest.mark.parametrize("max_age", ["0", "10"])
def test_3_1_2_1_max_age_asks_again_when_the_login_is_older(signed_in: Client, product: Product,
                                                           max_age: str) -> None:
    old = age_login(signed_in, 100)
    verifier, challenge = pkce()
    first = authorize(signed_in, product, challenge, max_age=max_age)
    assert "max_age" not in parse_qs(urlsplit(login_page_next(first)).query)  # the new login satisfies it
    claims = code_and_claims(signed_in, product, sign_in_through(signed_in, first), verifier)
    assert claims["auth_time"] > old


def test_3_1_2_1_max_age_larger_than_the_logins_age_is_silent(signed_in: Client, product: Product) -> None:
    old = age_login(signed_in, 100)
    verifier, challenge = pkce()
    claims = code_and_claims(signed_in, product, authorize(signed_in, product, challenge, max_age="3600"), verifier)
    assert claims["auth_time"] == old


@pytest.mark.parametrize("max_age", ["-1", "abc", "1.5", "1e3", "99999999999", " 5", "\u0665"])
def test_3_1_2_1_invalid_max_age_is_invalid_request(signed_in: Client, product: Product, max_age: str) -> None:
    _verifier, challenge = pkce()
    params = authorize_params(product, challenge, max_age=max_age)
    got = redirect_params(signed_in.get("/oidc/authorize/?" + urlencode(params)))
    assert got["error"] == "invalid_request" and got["state"] == params["state"] and "code" not in got


def test_3_1_2_1_invalid_max_age_is_refused_before_the_login_page(client: Client, product: Product) -> None:
    _verifier, challenge = pkce()
    got = redirect_params(authorize(client, product, challenge, max_age="abc"))
    assert got["error"] == "invalid_request"


# --- the central session's lifetimes bound single sign-on ------------------------------------------------
def test_idle_timeout_expired_means_the_login_page_again(signed_in: Client, product: Product) -> None:
    key = signed_in.cookies["loginsvc_sid"].value
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    redis = plugin.REDIS.client()
    redis.delete(*[k for k in redis.keys("*") if key.encode() in k])
    _verifier, challenge = pkce()
    login_page_next(authorize(signed_in, product, challenge))


def test_absolute_lifetime_expired_means_the_login_page_again(signed_in: Client, product: Product,
                                                             settings) -> None:
    with override_settings(LOGINSVC={**settings.LOGINSVC, "SESSION_MAX_SECONDS": 3600}):
        age_login(signed_in, 3601)
        _verifier, challenge = pkce()
        login_page_next(authorize(signed_in, product, challenge))
        assert signed_in.get("/api/session").json() == {"authenticated": False}


def test_absolute_lifetime_not_yet_reached_is_silent(signed_in: Client, product: Product, settings) -> None:
    with override_settings(LOGINSVC={**settings.LOGINSVC, "SESSION_MAX_SECONDS": 3600}):
        age_login(signed_in, 3000)
        _verifier, challenge = pkce()
        assert "code" in redirect_params(authorize(signed_in, product, challenge))


# --- the OIDC login is our login page, with its throttle -------------------------------------------------
def test_wrong_password_on_the_oidc_login_is_the_generic_error_and_keeps_next(client: Client, product: Product,
                                                                              user) -> None:
    _verifier, challenge = pkce()
    back = login_page_next(authorize(client, product, challenge))
    response = login(client, user.email, "wrong password", next=back)
    assert response.status_code == 401
    assert GENERIC_ERROR.encode() in response.content
    assert f'name="next" value="{back.replace("&", "&amp;")}"'.encode() in response.content  # still goes back
    unknown = login(client, "nobody@example.test", "wrong password", next=back)
    assert unknown.status_code == 401 and GENERIC_ERROR.encode() in unknown.content


def test_the_oidc_login_locks_after_the_threshold_like_the_login_page(product: Product, user, settings) -> None:
    threshold = 3
    with override_settings(LOGINSVC={**settings.LOGINSVC, "LOCKOUT_THRESHOLD": threshold}):
        _verifier, challenge = pkce()
        statuses = []
        for _ in range(threshold):
            browser = Client(enforce_csrf_checks=True)
            back = login_page_next(authorize(browser, product, challenge))
            statuses.append(login(browser, user.email, "wrong password", next=back).status_code)
        assert statuses == [401] * threshold
        browser = Client(enforce_csrf_checks=True)
        back = login_page_next(authorize(browser, product, challenge))
        locked = login(browser, user.email, PASSWORD, next=back)
        assert locked.status_code == 429 and "Retry-After" in locked
        assert "code" not in (locked.get("Location") or "")
        assert login_page_next(browser.get(back))  # still not signed in: no code


@pytest.mark.parametrize("ask", [{"prompt": "login"}, {"max_age": "0"}])
def test_3_1_2_1_re_authentication_cannot_be_skipped_by_dropping_the_parameter(signed_in: Client, product: Product,
                                                                             ask: dict[str, str]) -> None:
    """Asked once, the session needs the password before its next code, even for a URL without prompt/max_age."""
    old = age_login(signed_in, 100)
    verifier, challenge = pkce()
    login_page_next(authorize(signed_in, product, challenge, **ask))
    edited = authorize(signed_in, product, challenge)            # the same request, the parameter removed
    login_page_next(edited)                                        # still the login page, not a code
    claims = code_and_claims(signed_in, product, sign_in_through(signed_in, edited), verifier)
    assert claims["auth_time"] > old
    _verifier, again = pkce()
    assert "code" in redirect_params(authorize(signed_in, product, again))  # satisfied: silent again
