"""OpenID Connect RP-Initiated Logout 1.0: post_logout_redirect_uri only when registered for that product (§3, with
state); a hint we signed is accepted though expired, a forged or too old one is an error page (§2); GET and POST
(§2), the confirmation's answer CSRF-checked; a hint of this session ends it without a prompt, revoking this
session's tokens and not another browser's; any other hint asks first and, confirmed by someone who is not its
user, ends only the hinting product's sign-in."""
from __future__ import annotations

import html
import json
import re
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings
from django.test import Client, override_settings
from jwcrypto import jwk, jwt

from loginsvc.sso import keys, rp_logout
from loginsvc.sso.models import LogoutDelivery
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


def confirm(browser: Client, page, allow: bool = True, csrf: bool = True):
    """Answer the confirmation page as its form does: its hidden fields, the Sign out or the Cancel button."""
    assert page.status_code == 200 and b'name="allow"' in page.content, (page.status_code, page.content[:300])
    fields = {name: html.unescape(value) for name, value in
              re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.content.decode())}
    if not csrf:
        del fields["csrfmiddlewaretoken"]
    return browser.post("/oidc/logout/", {**fields, **({"allow": "Logout"} if allow else {})})


def active(product: Product, tokens: dict) -> bool:
    """Whether the product may still use this sign-in: its access token is active and its refresh token works
    (the refresh rotates the family, so call it once per sign-in and last)."""
    live = introspect(product, tokens["access_token"])["active"]
    refreshed = token(product, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 200
    assert live == refreshed, (live, refreshed)
    return live


def queued() -> set[tuple[str, str]]:
    """The back-channel logouts queued: (client_id, sid)."""
    return set(LogoutDelivery.objects.values_list("application__client_id", "sid"))


def expired_tokens(browser: Client, product: Product) -> dict:
    """A real code flow whose ID token has already expired (past jwcrypto's 60 s leeway) when it is issued."""
    with override_settings(OAUTH2_PROVIDER={**settings.OAUTH2_PROVIDER, "ID_TOKEN_EXPIRE_SECONDS": -120}):
        tokens = tokens_for(browser, product)
    assert unverified_claims(tokens["id_token"])["exp"] < time.time() - 60
    return tokens


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


# --- forged, foreign and too old hints -----------------------------------------------------------------------
def forgeries(real: str) -> dict[str, str]:
    claims = unverified_claims(real)
    header, payload, signature = real.split(".")
    rogue = jwk.JWK.generate(kty="RSA", size=2048)
    now = int(time.time())
    expired = {**claims, "exp": now - 3600, "iat": now - 4200}
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
        "expired, bad signature": signed(expired)[:-4] + "AAAA",
        "expired, rogue key": signed(expired, key=rogue),
        "expired, other issuer": signed({**expired, "iss": "https://evil.test"}),
        "older than a session can live": signed({**claims, "iat": now - rp_logout.max_hint_age() - 60,
                                                 "exp": now - rp_logout.max_hint_age()}),
        "issued in the future": signed({**claims, "iat": now + 3600, "exp": now + 4200}),
        "no iat": signed({k: v for k, v in claims.items() if k != "iat"}),
        "unknown audience": signed({**claims, "aud": "nobody"}),
        "two audiences": signed({**claims, "aud": [claims["aud"], "admin-portal"]}),
        "unknown user": signed({**claims, "sub": "999999"}),
        "sub not a user id": signed({**claims, "sub": "ann"}),
        "sub not as we write it": signed({**claims, "sub": " " + claims["sub"]}),
        "sub out of range": signed({**claims, "sub": "9" * 30}),
        "sid not a string": signed({**claims, "sid": 42}),
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
                                  "other issuer", "expired, bad signature", "expired, rogue key",
                                  "expired, other issuer", "older than a session can live", "issued in the future",
                                  "no iat", "unknown audience", "two audiences", "unknown user", "sub not a user id",
                                  "sub not as we write it", "sub out of range", "sid not a string", "claims not an object", "oversized"])
def test_2_forged_or_too_old_hint_is_an_error_page_and_ends_nothing(signed_in: Client, product: Product,
                                                                    name: str) -> None:
    """§2: the OP MUST validate that it issued the hint; expired is fine, forged or too old is not."""
    register("admin-portal")
    real = tokens_for(signed_in, product)
    hint = forgeries(real["id_token"])[name]
    assert_error_page(logout(signed_in, id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT, state="s"))
    assert_error_page(logout(Client(), id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT))
    assert_error_page(Client(enforce_csrf_checks=True).post("/oidc/logout/", {"id_token_hint": hint}))
    assert authenticated(signed_in)
    assert introspect(product, real["access_token"])["active"] is True
    assert not LogoutDelivery.objects.exists()


def test_2_forged_hint_is_logged_without_the_hint(signed_in: Client, product: Product, caplog) -> None:
    real = tokens_for(signed_in, product)["id_token"]
    hint = forgeries(real)["bad signature"]
    with caplog.at_level("INFO", logger="loginsvc.audit"):
        logout(signed_in, id_token_hint=hint)
    assert any(r.getMessage() == "sso: refused" and r.endpoint == "logout" for r in caplog.records)
    assert hint.split(".")[1] not in caplog.text


# --- a valid hint of this session ---------------------------------------------------------------------------
@pytest.fixture
def two_browsers(user) -> tuple[Client, Client]:
    """Two sessions of the same user: this browser and another one."""
    browsers = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    for browser in browsers:
        assert login(browser, user.email, PASSWORD).status_code == 302
    return browsers


def test_2_valid_hint_of_this_session_ends_it_without_a_prompt_and_only_its_tokens(product: Product,
                                                                                 two_browsers) -> None:
    other = register("admin-portal")
    here, elsewhere = two_browsers
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


def test_2_hint_of_another_session_of_this_user_asks_first(product: Product, two_browsers) -> None:
    here, elsewhere = two_browsers
    theirs = tokens_for(elsewhere, product)
    tokens_for(here, product)
    response = logout(here, id_token_hint=theirs["id_token"], post_logout_redirect_uri=POST_LOGOUT)
    assert response.status_code == 200 and b'name="allow"' in response.content
    assert authenticated(here) and authenticated(elsewhere)


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


# --- expired hints (§2: the OP SHOULD accept them) -----------------------------------------------------------
@pytest.mark.parametrize("row", ["kept", "gone"])
def test_2_expired_hint_of_this_session_ends_it_and_queues_backchannel_logouts(signed_in: Client, row: str) -> None:
    """The product holds the ID token of its sign-in, long expired by logout time; its IDToken row may be gone."""
    from oauth2_provider.models import IDToken

    webmail = register("webmail", backchannel="https://webmail.example.test/bcl")
    portal = register("admin-portal", backchannel="https://admin-portal.example.test/bcl")
    browser = signed_in
    mine, mine_portal = expired_tokens(browser, webmail), tokens_for(browser, portal)
    claims = unverified_claims(mine["id_token"])
    if row == "gone":
        IDToken.objects.filter(jti=claims["jti"]).delete()

    response = logout(browser, id_token_hint=mine["id_token"], post_logout_redirect_uri=POST_LOGOUT, state="s")
    assert response.status_code == 302 and response["Location"] == POST_LOGOUT + "?state=s"
    assert not authenticated(browser)
    assert not active(webmail, mine) and not active(portal, mine_portal)
    assert queued() == {("webmail", claims["sid"]), ("admin-portal", claims["sid"])}


# --- POST (§2: the OP MUST support GET and POST) ------------------------------------------------------------
def test_2_logout_request_by_post_needs_no_csrf_token(signed_in: Client, product: Product) -> None:
    """A product's form POSTs the request from its own origin: it cannot carry our CSRF token."""
    browser = signed_in
    mine = tokens_for(browser, product)
    response = browser.post("/oidc/logout/", {"id_token_hint": mine["id_token"], "state": "s",
                                              "post_logout_redirect_uri": POST_LOGOUT})
    assert response.status_code == 302 and response["Location"] == POST_LOGOUT + "?state=s"
    assert not authenticated(browser) and not active(product, mine)


def test_2_logout_request_by_post_without_hint_asks(signed_in: Client, product: Product) -> None:
    response = signed_in.post("/oidc/logout/", {"client_id": product.client_id,
                                                "post_logout_redirect_uri": POST_LOGOUT})
    assert response.status_code == 200 and b'name="allow"' in response.content
    assert authenticated(signed_in)


def test_2_confirmation_answer_without_csrf_token_is_refused(signed_in: Client, product: Product) -> None:
    """Only the product's request is exempt: the End-User's answer is CSRF-checked, with or without our field."""
    mine = tokens_for(signed_in, product)
    assert confirm(signed_in, logout(signed_in), csrf=False).status_code == 403
    assert signed_in.post("/oidc/logout/", {"allow": "Logout"}).status_code == 403
    assert authenticated(signed_in) and active(product, mine)


def test_2_anonymous_confirmation_without_csrf_token_ends_nothing(signed_in: Client, product: Product) -> None:
    theirs = tokens_for(signed_in, product)
    stranger = Client(enforce_csrf_checks=True)
    page = logout(stranger, id_token_hint=theirs["id_token"])
    assert confirm(stranger, page, csrf=False).status_code == 403
    assert active(product, theirs) and not queued()


def test_2_cancel_ends_nothing(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product)
    response = confirm(signed_in, logout(signed_in, id_token_hint="", client_id=product.client_id), allow=False)
    assert response.status_code == 400 and b"logout_denied" in response.content
    assert authenticated(signed_in) and active(product, mine)


# --- a hint that is not this session's (§2: the OP MUST ask) ------------------------------------------------
@pytest.fixture
def victim(signed_in: Client) -> Client:
    return signed_in


@pytest.fixture
def stranger(request, db: None) -> Client:
    """Whoever holds the victim's ID token: nobody signed in, or signed in as another user."""
    from loginsvc.accounts.models import User

    browser = Client(enforce_csrf_checks=True)
    if request.param == "signed in as another user":
        User.objects.create_user("bob@example.test", PASSWORD)
        assert login(browser, "bob@example.test", PASSWORD).status_code == 302
    return browser


STRANGERS = pytest.mark.parametrize("stranger", ["nobody signed in", "signed in as another user"], indirect=True)


@STRANGERS
def test_2_someone_elses_hint_asks_and_ends_nothing(victim: Client, stranger: Client) -> None:
    webmail, portal = register("webmail", backchannel="https://webmail.example.test/bcl"), register("admin-portal")
    theirs, theirs_portal = tokens_for(victim, webmail), tokens_for(victim, portal)
    page = logout(stranger, id_token_hint=theirs["id_token"], post_logout_redirect_uri=POST_LOGOUT)
    assert page.status_code == 200 and b'name="allow"' in page.content
    says = b"only that Webmail sign-in ends" if authenticated(stranger) else b"Webmail asks to end its sign-in"
    assert says in page.content
    assert authenticated(victim) and active(webmail, theirs) and active(portal, theirs_portal) and not queued()


@STRANGERS
def test_2_confirmed_by_someone_else_ends_only_the_hinting_products_sign_in(victim: Client, stranger: Client) -> None:
    webmail = register("webmail", backchannel="https://webmail.example.test/bcl")
    portal = register("admin-portal", backchannel="https://admin-portal.example.test/bcl")
    theirs, theirs_portal = tokens_for(victim, webmail), tokens_for(victim, portal)
    page = logout(stranger, id_token_hint=theirs["id_token"], post_logout_redirect_uri=POST_LOGOUT, state="s")
    response = confirm(stranger, page)
    assert response.status_code == 302 and response["Location"] == POST_LOGOUT + "?state=s"
    assert not authenticated(stranger)
    assert not active(webmail, theirs)
    assert queued() == {("webmail", unverified_claims(theirs["id_token"])["sid"])}
    assert authenticated(victim) and active(portal, theirs_portal)


def test_2_hint_whose_session_ended_is_confirmed_then_ends_that_products_sign_in(victim: Client) -> None:
    """The product's user is gone from here (session timed out): it can still end what is left of its sign-in."""
    webmail = register("webmail", backchannel="https://webmail.example.test/bcl")
    theirs = expired_tokens(victim, webmail)
    victim.session.delete()                             # the central session timed out in the store
    assert not authenticated(victim)
    page = logout(victim, id_token_hint=theirs["id_token"], post_logout_redirect_uri=POST_LOGOUT, state="s")
    assert b"You are not signed in here" in page.content
    response = confirm(victim, page)
    assert response.status_code == 302 and response["Location"] == POST_LOGOUT + "?state=s"
    assert not active(webmail, theirs)
    assert queued() == {("webmail", unverified_claims(theirs["id_token"])["sid"])}


def test_2_hint_of_another_session_confirmed_by_its_user_ends_all_its_sign_ins(product: Product,
                                                                                 two_browsers) -> None:
    portal = register("admin-portal")
    here, elsewhere = two_browsers
    theirs, theirs_portal = tokens_for(elsewhere, product), tokens_for(elsewhere, portal)
    mine = tokens_for(here, product)
    response = confirm(here, logout(here, id_token_hint=theirs["id_token"]))
    assert response.status_code == 302
    assert not authenticated(here) and not active(product, mine)
    assert not active(product, theirs) and not active(portal, theirs_portal)
