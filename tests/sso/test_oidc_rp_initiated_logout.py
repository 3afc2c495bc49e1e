"""OpenID Connect RP-Initiated Logout 1.0: post_logout_redirect_uri only when registered for that product (§3, with
state), forged or expired ID token hints are an error page (§2), and a valid hint of this session ends it
without a prompt, revoking this session's tokens and not another browser's."""
from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client
from jwcrypto import jwk, jwt

from loginsvc.sso import keys
from tests.conftest import PASSWORD, login
from tests.sso.conftest import ISSUER, Product, register, token
from tests.sso.tokens import bearer, introspect, tokens_for, unverified_claims

POST_LOGOUT = "https://webmail.example.test/"


def logout(browser: Client, **params: str):
    return browser.get("/oidc/logout/?" + urlencode(params))


def assert_error_page(response) -> None:
    assert response.status_code == 400, (response.status_code, response.get("Location"))
    assert "Location" not in response
    assert b"cannot be completed" in response.content


def signed(claims: dict, key: jwk.JWK | None = None, kid: str | None = None) -> str:
    """A JWT with these claims, signed by our current key unless told otherwise."""
    current = keys.ring().signing_key()
    token_ = jwt.JWT(header={"alg": "RS256", "kid": kid or current.kid}, claims=json.dumps(claims))
    token_.make_signed_token(key or current.private)
    return token_.serialize()


def authenticated(browser: Client) -> bool:
    return browser.get("/api/session").json()["authenticated"]


# --- post_logout_redirect_uri -------------------------------------------------------------------------------
def test_3_registered_post_logout_redirect_uri_gets_state(signed_in: Client, product: Product) -> None:
    hint = tokens_for(signed_in, product)["id_token"]
    response = logout(signed_in, id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT, state="s-42")
    assert response.status_code == 302
    parts = urlsplit(response["Location"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == POST_LOGOUT
    assert parse_qs(parts.query) == {"state": ["s-42"]}
    assert not authenticated(signed_in)


def test_3_post_logout_redirect_uri_with_client_id_and_no_hint(signed_in: Client, product: Product) -> None:
    """Without a hint the user is asked first (§2: MUST ask); the redirect follows the confirmation."""
    response = logout(signed_in, client_id=product.client_id, post_logout_redirect_uri=POST_LOGOUT, state="s")
    assert response.status_code == 200 and b'name="allow"' in response.content
    assert authenticated(signed_in)


@pytest.mark.parametrize("uri", ["https://webmail.example.test", "https://webmail.example.test/x",
                                 "https://WEBMAIL.example.test/", "https://webmail.example.test/?a=1",
                                 "https://webmail.example.test:444/", "http://webmail.example.test/",
                                 "https://evil.test/", "https://webmail.example.test@evil.test/",
                                 "https://admin-portal.example.test/", "//evil.test/", "javascript:alert(1)"])
def test_3_unregistered_post_logout_redirect_uri_is_an_error_page(signed_in: Client, product: Product,
                                                                  uri: str) -> None:
    register("admin-portal")
    hint = tokens_for(signed_in, product)["id_token"]
    assert_error_page(logout(signed_in, id_token_hint=hint, post_logout_redirect_uri=uri, state="s"))
    assert authenticated(signed_in)  # nothing happened


def test_3_another_products_post_logout_uri_is_an_error_page(signed_in: Client, product: Product) -> None:
    register("admin-portal")
    hint = tokens_for(signed_in, product)["id_token"]
    response = logout(signed_in, id_token_hint=hint, post_logout_redirect_uri="https://admin-portal.example.test/")
    assert_error_page(response)


def test_3_post_logout_redirect_uri_without_hint_or_client_is_an_error_page(signed_in: Client,
                                                                           product: Product) -> None:
    assert_error_page(logout(signed_in, post_logout_redirect_uri=POST_LOGOUT))


@pytest.mark.parametrize("client_id", ["nobody", "", "x" * 300])
def test_2_unknown_client_id_is_an_error_page(signed_in: Client, product: Product, client_id: str) -> None:
    response = logout(signed_in, client_id=client_id, post_logout_redirect_uri=POST_LOGOUT)
    assert_error_page(response)


def test_2_hint_of_another_client_than_client_id_is_an_error_page(signed_in: Client, product: Product) -> None:
    register("admin-portal")
    hint = tokens_for(signed_in, product)["id_token"]
    assert_error_page(logout(signed_in, id_token_hint=hint, client_id="admin-portal"))


# --- forged, foreign and expired hints ------------------------------------------------------------------------
def forgeries(real: str) -> dict[str, str]:
    claims = unverified_claims(real)
    header, payload, signature = real.split(".")
    rogue = jwk.JWK.generate(kty="RSA", size=2048)
    return {
        "garbage": "not-a-jwt",
        "empty parts": "..",
        "bad base64": "@@@.@@@.@@@",
        "json serialization": json.dumps({"payload": payload, "signatures": []}),
        "bad signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "other payload": f"{header}.{signed({**claims, 'sub': '999'}).split('.')[1]}.{signature}",
        "rogue key, our kid": signed(claims, key=rogue),
        "rogue key, unknown kid": signed(claims, key=rogue, kid="nope"),
        "alg none": header + "." + payload + ".",
        "other issuer": signed({**claims, "iss": "https://evil.test"}),
        "expired": signed({**claims, "exp": int(time.time()) - 120, "iat": int(time.time()) - 720}),  # past the 60 s leeway
        "unknown jti": signed({**claims, "jti": "00000000-0000-0000-0000-000000000000"}),
        "no jti": signed({k: v for k, v in claims.items() if k != "jti"}),
        "claims not an object": signed_raw("[1, 2, 3]"),
        "oversized": "a" * 9000,
    }


def signed_raw(payload: str) -> str:
    current = keys.ring().signing_key()
    token_ = jwt.JWT(header={"alg": "RS256", "kid": current.kid}, claims=payload)
    token_.make_signed_token(current.private)
    return token_.serialize()




@pytest.mark.parametrize("name", ["garbage", "empty parts", "bad base64", "json serialization", "bad signature",
                                  "other payload", "rogue key, our kid", "rogue key, unknown kid", "alg none",
                                  "other issuer", "expired", "unknown jti", "no jti", "claims not an object",
                                  "oversized"])
def test_2_forged_or_expired_hint_is_an_error_page_never_a_500(signed_in: Client, product: Product,
                                                               name: str) -> None:
    real = tokens_for(signed_in, product)["id_token"]
    hint = forgeries(real)[name]
    assert_error_page(logout(signed_in, id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT, state="s"))
    assert authenticated(signed_in)
    assert_error_page(logout(Client(), id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT))


def test_2_forged_hint_is_logged_without_the_hint(signed_in: Client, product: Product, caplog) -> None:
    real = tokens_for(signed_in, product)["id_token"]
    hint = forgeries(real)["bad signature"]
    with caplog.at_level("INFO", logger="loginsvc.audit"):
        logout(signed_in, id_token_hint=hint)
    assert any(r.getMessage() == "sso: refused" and r.endpoint == "logout" for r in caplog.records)
    assert hint.split(".")[1] not in caplog.text


# --- a valid hint of this session ---------------------------------------------------------------------------
def test_2_valid_hint_of_this_session_ends_it_without_a_prompt_and_only_its_tokens(product: Product, user) -> None:
    other = register("admin-portal")
    here, elsewhere = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    for browser in (here, elsewhere):
        assert login(browser, user.email, PASSWORD).status_code == 302
    mine, mine_admin = tokens_for(here, product), tokens_for(here, other)
    theirs = tokens_for(elsewhere, product)

    response = logout(here, id_token_hint=mine["id_token"], post_logout_redirect_uri=POST_LOGOUT, state="s")
    assert response.status_code == 302 and response["Location"].startswith(POST_LOGOUT)
    assert not authenticated(here)
    # This session's tokens, at every product it signed in to, are revoked.
    assert introspect(product, mine["access_token"]) == {"active": False}
    assert introspect(other, mine_admin["access_token"]) == {"active": False}
    assert token(product, grant_type="refresh_token", refresh_token=mine["refresh_token"]).status_code == 400
    assert token(other, grant_type="refresh_token", refresh_token=mine_admin["refresh_token"]).status_code == 400
    # The same user's other browser keeps its session and its tokens.
    assert authenticated(elsewhere)
    assert introspect(product, theirs["access_token"])["active"] is True
    assert Client().get("/oidc/userinfo/", **bearer(theirs["access_token"])).status_code == 200
    assert token(product, grant_type="refresh_token", refresh_token=theirs["refresh_token"]).status_code == 200


def test_2_hint_of_another_session_of_this_user_asks_first(product: Product, user) -> None:
    here, elsewhere = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    for browser in (here, elsewhere):
        assert login(browser, user.email, PASSWORD).status_code == 302
    theirs = tokens_for(elsewhere, product)
    tokens_for(here, product)
    response = logout(here, id_token_hint=theirs["id_token"], post_logout_redirect_uri=POST_LOGOUT)
    assert response.status_code == 200 and b'name="allow"' in response.content
    assert authenticated(here) and authenticated(elsewhere)


def test_2_hint_without_a_session_here_ends_that_sessions_tokens(product: Product, user) -> None:
    """The browser's session already ended (timeout, /logout/ elsewhere): the hint's sign-ins are ended anyway."""
    browser = Client(enforce_csrf_checks=True)
    assert login(browser, user.email, PASSWORD).status_code == 302
    mine = tokens_for(browser, product)
    response = logout(Client(), id_token_hint=mine["id_token"], post_logout_redirect_uri=POST_LOGOUT)
    assert response.status_code == 302 and response["Location"].startswith(POST_LOGOUT)
    assert introspect(product, mine["access_token"]) == {"active": False}


def test_2_no_hint_asks_for_confirmation_and_post_signs_out(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product)
    page = logout(signed_in)
    assert page.status_code == 200 and b'name="allow"' in page.content
    assert authenticated(signed_in)
    csrf = signed_in.cookies["csrftoken"].value
    done = signed_in.post("/oidc/logout/", {"allow": "Logout", "csrfmiddlewaretoken": csrf})
    assert done.status_code == 302
    assert not authenticated(signed_in)
    assert introspect(product, mine["access_token"]) == {"active": False}


def test_2_logout_token_issuer_is_checked_against_ours(signed_in: Client, product: Product) -> None:
    """The check the forgeries rely on: a genuine hint names our issuer."""
    assert unverified_claims(tokens_for(signed_in, product)["id_token"])["iss"] == ISSUER
