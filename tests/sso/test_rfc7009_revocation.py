"""RFC 7009: a product revokes its own access and refresh tokens; unknown tokens are a 200, other products'
tokens cannot be revoked, and a bad client is invalid_client."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.sso.conftest import Product, code_for, register, token
from tests.sso.tokens import bearer, introspect, tokens_for


def revoke(product: Product, value: str, secret: str | None = None, **extra: str):
    return Client().post("/oidc/revoke/", {"token": value, **extra}, **product.basic(secret))


def test_2_1_revoking_an_access_token_ends_it(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product)
    response = revoke(product, mine["access_token"], token_type_hint="access_token")
    assert response.status_code == 200
    assert introspect(product, mine["access_token"]) == {"active": False}
    assert Client().get("/oidc/userinfo/", **bearer(mine["access_token"])).status_code == 401


def test_2_1_revoking_a_refresh_token_ends_it_and_its_access_token(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product)
    assert revoke(product, mine["refresh_token"], token_type_hint="refresh_token").status_code == 200
    response = token(product, grant_type="refresh_token", refresh_token=mine["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert introspect(product, mine["access_token"]) == {"active": False}


@pytest.mark.parametrize("hint", ["", "refresh_token", "access_token"])
def test_2_1_the_hint_is_only_a_hint(signed_in: Client, product: Product, hint: str) -> None:
    """§2.1: a wrong hint still revokes (the server searches all types)."""
    mine = tokens_for(signed_in, product)
    assert revoke(product, mine["access_token"], token_type_hint=hint).status_code == 200
    assert introspect(product, mine["access_token"]) == {"active": False}


@pytest.mark.parametrize("value", ["no-such-token", "x" * 255, "\u00e9"])
def test_2_2_unknown_token_is_200(product: Product, value: str) -> None:
    assert revoke(product, value).status_code == 200


def test_2_1_a_product_cannot_revoke_another_products_tokens(signed_in: Client, product: Product) -> None:
    other = register("admin-portal")
    mine = tokens_for(signed_in, product)
    # A 200 like an unknown token's (§2.2): the other product learns nothing, and nothing is revoked.
    assert revoke(other, mine["access_token"]).status_code == 200
    assert revoke(other, mine["refresh_token"]).status_code == 200
    assert introspect(product, mine["access_token"])["active"] is True
    assert token(product, grant_type="refresh_token", refresh_token=mine["refresh_token"]).status_code == 200


def test_2_1_wrong_secret_is_401_invalid_client_and_revokes_nothing(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product)
    response = revoke(product, mine["access_token"], secret="wrong")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert introspect(product, mine["access_token"])["active"] is True


def test_2_1_no_client_authentication_is_refused(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product)
    response = Client().post("/oidc/revoke/", {"token": mine["access_token"]})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert introspect(product, mine["access_token"])["active"] is True


def test_2_1_a_public_product_revokes_its_own_tokens(signed_in: Client) -> None:
    public = register("quarantine", confidential=False)
    code, verifier, _params = code_for(signed_in, public)
    issued = Client().post("/oidc/token/", {"grant_type": "authorization_code", "code": code,
                                            "redirect_uri": public.redirect_uri, "code_verifier": verifier,
                                            "client_id": public.client_id}).json()
    response = Client().post("/oidc/revoke/", {"token": issued["refresh_token"], "client_id": public.client_id})
    assert response.status_code == 200
    refreshed = Client().post("/oidc/token/", {"grant_type": "refresh_token", "client_id": public.client_id,
                                               "refresh_token": issued["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"


def test_2_1_missing_token_is_invalid_request(product: Product) -> None:
    response = Client().post("/oidc/revoke/", {}, **product.basic())
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_2_1_get_is_refused(product: Product) -> None:
    assert Client().get("/oidc/revoke/", {"token": "x"}, **product.basic()).status_code in (400, 405)


def test_2_1_refusals_are_logged_without_the_token(signed_in: Client, product: Product, caplog) -> None:
    mine = tokens_for(signed_in, product)
    with caplog.at_level("INFO", logger="loginsvc.audit"):
        revoke(product, mine["access_token"], secret="wrong-secret-value")
    refused = [r for r in caplog.records if r.getMessage() == "sso: refused"]
    assert refused and refused[0].endpoint == "revoke" and refused[0].error == "invalid_client"
    assert mine["access_token"] not in caplog.text and "wrong-secret-value" not in caplog.text


def test_2_1_a_public_product_revokes_with_its_client_id_alone(signed_in: Client) -> None:
    """Discovery says "none" for revocation: a public product sends only client_id (§2.1, RFC 6749 §2.3)."""
    from tests.sso.conftest import exchange

    public = register("mobile", confidential=False)
    code, verifier, _params = code_for(signed_in, public)
    mine = exchange(public, code, verifier, client_id="mobile").json()
    response = Client().post("/oidc/revoke/", {"token": mine["refresh_token"], "client_id": "mobile"})
    assert response.status_code == 200
    refused = token(public, grant_type="refresh_token", refresh_token=mine["refresh_token"], client_id="mobile")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
