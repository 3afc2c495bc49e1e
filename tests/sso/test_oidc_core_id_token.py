"""OpenID Connect Core §2, §3.1.3.6-7: the ID token — RS256 by a key in the JWKS, iss, aud, nonce, at_hash,
auth_time of this session's login, and one sid per browser session shared by every product it signs in to."""
from __future__ import annotations

import time

import pytest
from django.test import Client

from tests.conftest import PASSWORD, login
from tests.sso.conftest import ISSUER, Product, register
from tests.sso.tokens import age_login, at_hash, tokens_for, verify_id_token


def browser_signed_in(user) -> Client:
    browser = Client(enforce_csrf_checks=True)
    assert login(browser, user.email, PASSWORD).status_code == 302
    return browser


def test_3_1_3_7_id_token_is_rs256_signed_by_a_published_key(signed_in: Client, product: Product) -> None:
    raw = tokens_for(signed_in, product)["id_token"]
    header, _claims = verify_id_token(raw, product)
    assert header["alg"] == "RS256"
    published = [k["kid"] for k in Client().get("/oidc/jwks/").json()["keys"]]
    assert header["kid"] in published


def test_3_1_3_7_id_token_is_not_accepted_with_another_key(signed_in: Client, product: Product) -> None:
    """The check above can fail: a token signed by a key we do not publish does not verify."""
    from jwcrypto import jwk, jwt

    _header, claims = verify_id_token(tokens_for(signed_in, product)["id_token"], product)
    rogue = jwk.JWK.generate(kty="RSA", size=2048)
    forged = jwt.JWT(header={"alg": "RS256", "kid": "rogue"}, claims=claims)
    forged.make_signed_token(rogue)
    with pytest.raises(Exception):
        verify_id_token(forged.serialize(), product)


def test_2_iss_aud_sub_exp_iat(signed_in: Client, product: Product, user) -> None:
    _header, claims = verify_id_token(tokens_for(signed_in, product)["id_token"], product)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == product.client_id or claims["aud"] == [product.client_id]
    assert claims["sub"] == str(user.pk)
    assert claims["exp"] - claims["iat"] == 600
    assert abs(claims["iat"] - time.time()) < 30


def test_3_1_3_7_nonce_is_echoed(signed_in: Client, product: Product) -> None:
    _header, claims = verify_id_token(tokens_for(signed_in, product, nonce="n-0123456789")["id_token"], product)
    assert claims["nonce"] == "n-0123456789"


def test_3_1_3_6_at_hash_is_the_left_half_of_the_access_tokens_sha256(signed_in: Client, product: Product) -> None:
    tokens = tokens_for(signed_in, product)
    _header, claims = verify_id_token(tokens["id_token"], product)
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    assert claims["at_hash"] != at_hash(tokens["access_token"] + "x")


def test_2_auth_time_is_this_sessions_login_not_a_later_login_elsewhere(product: Product, user) -> None:
    first = browser_signed_in(user)
    logged_in_at = age_login(first, 100)
    browser_signed_in(user)  # the same user signs in again in another browser (moves last_login)
    _header, claims = verify_id_token(tokens_for(first, product)["id_token"], product)
    assert claims["auth_time"] == logged_in_at


def test_2_auth_time_of_a_second_product_is_the_same_login(product: Product, user) -> None:
    browser = browser_signed_in(user)
    logged_in_at = age_login(browser, 50)
    other = register("admin-portal")
    _h, first = verify_id_token(tokens_for(browser, product)["id_token"], product)
    _h, second = verify_id_token(tokens_for(browser, other)["id_token"], other)
    assert first["auth_time"] == second["auth_time"] == logged_in_at


def test_sid_is_shared_by_the_products_of_one_browser_and_differs_between_browsers(product: Product, user) -> None:
    other = register("admin-portal")
    browser, elsewhere = browser_signed_in(user), browser_signed_in(user)
    _h, webmail = verify_id_token(tokens_for(browser, product)["id_token"], product)
    _h, admin = verify_id_token(tokens_for(browser, other)["id_token"], other)
    _h, far = verify_id_token(tokens_for(elsewhere, product)["id_token"], product)
    assert webmail["sid"] and webmail["sid"] == admin["sid"]
    assert far["sid"] and far["sid"] != webmail["sid"]


def test_sid_is_not_the_session_cookie(signed_in: Client, product: Product) -> None:
    _h, claims = verify_id_token(tokens_for(signed_in, product)["id_token"], product)
    assert claims["sid"] != signed_in.cookies["loginsvc_sid"].value
    assert signed_in.cookies["loginsvc_sid"].value not in str(claims)


def test_5_4_id_token_claims_follow_the_scopes(signed_in: Client, product: Product) -> None:
    _h, only_openid = verify_id_token(tokens_for(signed_in, product, scope="openid")["id_token"], product)
    assert "email" not in only_openid and "name" not in only_openid
    _h, full = verify_id_token(tokens_for(signed_in, product, scope="openid email profile")["id_token"], product)
    assert full["email"] == "ann.example@example.test" and full["email_verified"] is True and full["name"]


def test_3_1_3_3_token_response_is_bearer_and_not_cached(signed_in: Client, product: Product) -> None:
    from tests.sso.conftest import code_for, exchange

    code, verifier, _params = code_for(signed_in, product)
    response = exchange(product, code, verifier)
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert set(body) >= {"access_token", "refresh_token", "id_token"}
