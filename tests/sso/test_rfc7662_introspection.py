"""RFC 7662: introspection answers an authenticated confidential product about its own tokens only;
everything else is inactive, and a public or unauthenticated client is invalid_client."""
from __future__ import annotations

import base64
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.sso.conftest import ISSUER, Product, register, token
from tests.sso.tokens import introspect, tokens_for


def test_2_2_an_active_access_token(signed_in: Client, product: Product, user) -> None:
    mine = tokens_for(signed_in, product)
    body = introspect(product, mine["access_token"])
    assert body["active"] is True
    assert body["client_id"] == product.client_id and body["sub"] == str(user.pk)
    assert body["scope"] == "openid email profile" and body["iss"] == ISSUER
    assert body["token_type"] == "Bearer"
    assert time.time() < body["exp"] <= time.time() + 600


def test_2_2_an_active_refresh_token_and_after_rotation_inactive(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product)
    assert introspect(product, mine["refresh_token"])["active"] is True
    assert token(product, grant_type="refresh_token", refresh_token=mine["refresh_token"]).status_code == 200
    assert introspect(product, mine["refresh_token"]) == {"active": False}


def test_2_2_revoked_token_is_inactive(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product)
    Client().post("/oidc/revoke/", {"token": mine["access_token"]}, **product.basic())
    assert introspect(product, mine["access_token"]) == {"active": False}


def test_2_2_expired_token_is_inactive(signed_in: Client, product: Product) -> None:
    from oauth2_provider.models import AccessToken

    mine = tokens_for(signed_in, product)
    AccessToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert introspect(product, mine["access_token"]) == {"active": False}


def test_2_2_another_products_token_is_inactive(signed_in: Client, product: Product) -> None:
    other = register("admin-portal")
    mine = tokens_for(signed_in, product)
    assert introspect(other, mine["access_token"]) == {"active": False}
    assert introspect(other, mine["refresh_token"]) == {"active": False}
    assert introspect(product, mine["access_token"])["active"] is True


@pytest.mark.parametrize("value", ["garbage", "x" * 512, "\u00e9t\u00e9"])
def test_2_2_unknown_token_is_inactive(product: Product, value: str) -> None:
    assert introspect(product, value) == {"active": False}


def test_2_1_public_client_is_401_invalid_client(signed_in: Client, product: Product) -> None:
    public = register("quarantine", confidential=False)
    mine = tokens_for(signed_in, product)
    response = Client().post("/oidc/introspect/", {"token": mine["access_token"], "client_id": public.client_id})
    assert response.status_code == 401 and response.json() == {"error": "invalid_client"}
    assert response["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("auth", [None, "wrong-secret", "Basic !!!", "Bearer token"])
def test_2_1_unauthenticated_client_is_401_invalid_client(signed_in: Client, product: Product, auth) -> None:
    mine = tokens_for(signed_in, product)
    if auth is None:
        headers = {}
    elif auth == "wrong-secret":
        headers = product.basic("wrong-secret")
    else:
        headers = {"HTTP_AUTHORIZATION": auth}
    response = Client().post("/oidc/introspect/", {"token": mine["access_token"]}, **headers)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert b"active" not in response.content


def test_2_1_an_access_token_is_not_client_authentication(signed_in: Client, product: Product) -> None:
    """A product's user's bearer token does not make anyone a client (RFC 7662 §2.1 allows it; we do not)."""
    mine = tokens_for(signed_in, product)
    response = Client().post("/oidc/introspect/", {"token": mine["access_token"]},
                             HTTP_AUTHORIZATION=f"Bearer {mine['access_token']}")
    assert response.status_code == 401


def test_2_1_missing_token_is_400(product: Product) -> None:
    response = Client().post("/oidc/introspect/", {}, **product.basic())
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_2_1_client_secret_post_works_too(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product)
    response = Client().post("/oidc/introspect/", {"token": mine["access_token"], "client_id": product.client_id,
                                                   "client_secret": product.secret})
    assert response.status_code == 200 and response.json()["active"] is True


def test_2_1_get_is_refused(product: Product) -> None:
    assert Client().get("/oidc/introspect/", {"token": "x"}, **product.basic()).status_code == 405


def test_2_2_answers_are_not_cached(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product)
    response = Client().post("/oidc/introspect/", {"token": mine["access_token"]}, **product.basic())
    assert response["Cache-Control"] == "no-store"


def test_4_refusals_are_logged_without_secrets(signed_in: Client, product: Product, caplog) -> None:
    mine = tokens_for(signed_in, product)
    raw = base64.b64encode(f"{product.client_id}:wrong-secret-value".encode()).decode()
    with caplog.at_level("INFO", logger="loginsvc.audit"):
        Client().post("/oidc/introspect/", {"token": mine["access_token"]}, HTTP_AUTHORIZATION=f"Basic {raw}")
    assert any(r.getMessage() == "sso: refused" and r.endpoint == "introspect" for r in caplog.records)
    assert mine["access_token"] not in caplog.text and "wrong-secret-value" not in caplog.text


def test_2_2_claims_follow_scopes_no_username_without_email(signed_in: Client, product: Product, user) -> None:
    """The email address is released only to a token granted the email scope, as in userinfo."""
    with_email = tokens_for(signed_in, product)
    assert introspect(product, with_email["access_token"])["username"] == user.email
    narrow = tokens_for(signed_in, product, scope="openid")
    for value in (narrow["access_token"], narrow["refresh_token"]):
        body = introspect(product, value)
        assert body["active"] is True and body["sub"] == str(user.pk) and "username" not in body
        assert body["scope"] == "openid"


@pytest.mark.parametrize("ended", ["idle", "maximum age", "sign-in gone"])
def test_2_2_a_refresh_token_the_grant_would_refuse_is_inactive(signed_in: Client, product: Product, ended: str,
                                                                settings) -> None:
    """"active" means the server would accept it (§2.2): the refresh grant's own checks apply."""
    from oauth2_provider.models import RefreshToken

    from loginsvc.sso.models import SignIn

    mine = tokens_for(signed_in, product)
    if ended == "idle":
        RefreshToken.objects.update(created=timezone.now() - timedelta(seconds=settings.LOGINSVC["SESSION_IDLE_SECONDS"]))
    elif ended == "maximum age":
        SignIn.objects.update(auth_time=int(time.time()) - settings.LOGINSVC["SESSION_MAX_SECONDS"])
    else:
        SignIn.objects.all().delete()
    assert introspect(product, mine["refresh_token"]) == {"active": False}
    refused = token(product, grant_type="refresh_token", refresh_token=mine["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
