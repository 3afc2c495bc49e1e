"""OpenID Connect Core §5.3 (and RFC 6750 §2-3): userinfo releases what the scopes allow, to a valid bearer only."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.sso.conftest import Product, token
from tests.sso.tokens import bearer, tokens_for


def userinfo(access_token: str, **extra):
    return Client().get("/oidc/userinfo/", **bearer(access_token), **extra)


def assert_refused(response) -> None:
    assert response.status_code == 401, (response.status_code, response.content[:200])
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"email" not in response.content


def test_5_3_2_userinfo_has_email_email_verified_and_name(signed_in: Client, product: Product, user) -> None:
    user.display_name = "Ann Example"
    user.save()
    response = userinfo(tokens_for(signed_in, product)["access_token"])
    assert response.status_code == 200
    assert response.json() == {"sub": str(user.pk), "email": "ann.example@example.test",
                               "email_verified": True, "name": "Ann Example", "acr": "1", "amr": ["pwd"]}


@pytest.mark.parametrize("scope,claims", [("openid", {"sub", "acr", "amr"}),
                                          ("openid email", {"sub", "acr", "amr", "email", "email_verified"}),
                                          ("openid profile", {"sub", "acr", "amr", "name"})])
def test_5_4_only_what_the_scopes_allow(signed_in: Client, product: Product, scope: str, claims: set) -> None:
    response = userinfo(tokens_for(signed_in, product, scope=scope)["access_token"])
    assert set(response.json()) == claims


def test_5_3_1_post_with_the_bearer_header_works_too(signed_in: Client, product: Product) -> None:
    response = Client().post("/oidc/userinfo/", **bearer(tokens_for(signed_in, product)["access_token"]))
    assert response.status_code == 200 and "sub" in response.json()


@pytest.mark.parametrize("value", ["", "garbage", "x" * 4000, "a b", "\u00e9\u00e9"])
def test_5_3_3_bad_token_is_401_with_www_authenticate(db: None, value: str) -> None:
    assert_refused(Client().get("/oidc/userinfo/", HTTP_AUTHORIZATION=f"Bearer {value}".encode().decode("latin-1")))


def test_5_3_3_no_token_is_401_with_www_authenticate(db: None) -> None:
    assert_refused(Client().get("/oidc/userinfo/"))


def test_5_3_3_expired_token_is_401(signed_in: Client, product: Product) -> None:
    from oauth2_provider.models import AccessToken

    value = tokens_for(signed_in, product)["access_token"]
    AccessToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert_refused(userinfo(value))


def test_5_3_3_revoked_token_is_401(signed_in: Client, product: Product) -> None:
    value = tokens_for(signed_in, product)["access_token"]
    assert Client().post("/oidc/revoke/", {"token": value}, **product.basic()).status_code == 200
    assert_refused(userinfo(value))


def test_5_3_3_refresh_token_is_not_an_access_token(signed_in: Client, product: Product) -> None:
    assert_refused(userinfo(tokens_for(signed_in, product)["refresh_token"]))


def test_5_3_token_without_openid_scope_is_refused(signed_in: Client, product: Product) -> None:
    """§5.3: userinfo is for OpenID Connect access tokens; a refresh narrowed to `email` gets no claims."""
    tokens = tokens_for(signed_in, product, scope="openid email")
    refreshed = token(product, grant_type="refresh_token", refresh_token=tokens["refresh_token"], scope="email")
    assert refreshed.status_code == 200 and refreshed.json()["scope"] == "email"
    assert_refused(userinfo(refreshed.json()["access_token"]))


def test_rfc6750_2_3_access_token_in_the_query_string_is_refused(signed_in: Client, product: Product) -> None:
    """RFC 9700 §2.5 / RFC 6750 §2.3: never in the URI (logs, Referer)."""
    value = tokens_for(signed_in, product)["access_token"]
    response = Client().get("/oidc/userinfo/", {"access_token": value})
    assert response.status_code in (400, 401)
    assert b"email" not in response.content


def test_rfc6750_2_2_access_token_in_a_form_body_is_refused(signed_in: Client, product: Product) -> None:
    value = tokens_for(signed_in, product)["access_token"]
    response = Client().post("/oidc/userinfo/", {"access_token": value})
    assert response.status_code in (400, 401)
    assert b"email" not in response.content
