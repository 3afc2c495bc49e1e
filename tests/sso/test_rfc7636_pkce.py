"""RFC 7636 (with RFC 9700 §2.1.1): PKCE with S256 is required of every client, confidential ones too."""
from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlencode

import pytest
from django.test import Client

from tests.sso.conftest import Product, authorize_params, code_for, exchange, pkce, redirect_params, register


def authorize_with(browser: Client, product: Product, **pkce_params: str | None):
    _verifier, challenge = pkce()
    params = authorize_params(product, challenge, **pkce_params)
    return params, browser.get("/oidc/authorize/?" + urlencode(params))


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@pytest.mark.parametrize("confidential", [True, False])
def test_4_4_1_missing_code_challenge_is_refused_for_every_client(signed_in: Client, confidential: bool) -> None:
    product = register("webmail", confidential=confidential)
    params, response = authorize_with(signed_in, product, code_challenge=None, code_challenge_method=None)
    got = redirect_params(response)
    assert got["error"] == "invalid_request" and got["state"] == params["state"]
    assert "code" not in got


@pytest.mark.parametrize("confidential", [True, False])
def test_4_3_plain_method_is_refused(signed_in: Client, confidential: bool) -> None:
    product = register("webmail", confidential=confidential)
    params, response = authorize_with(signed_in, product, code_challenge_method="plain")
    got = redirect_params(response)
    assert got["error"] == "invalid_request" and got["state"] == params["state"]
    assert "code" not in got


@pytest.mark.parametrize("method", ["S512", "s256", "", None])
def test_4_3_unknown_or_missing_method_is_refused(signed_in: Client, product: Product, method: str | None) -> None:
    """§4.3 defaults a missing method to plain, which RFC 9700 forbids: refused like plain."""
    _params, response = authorize_with(signed_in, product, code_challenge_method=method)
    got = redirect_params(response)
    assert got["error"] == "invalid_request" and "code" not in got


@pytest.mark.parametrize("challenge", ["short", "a" * 129, "has spaces in it" * 4, "+/=" * 15])
def test_4_2_malformed_code_challenge_is_refused(signed_in: Client, product: Product, challenge: str) -> None:
    params, response = authorize_with(signed_in, product, code_challenge=challenge)
    got = redirect_params(response)
    assert got["error"] == "invalid_request" and got["state"] == params["state"] and "code" not in got


@pytest.mark.parametrize("confidential", [True, False])
def test_4_6_wrong_code_verifier_is_invalid_grant(signed_in: Client, confidential: bool) -> None:
    product = register("webmail", confidential=confidential)
    code, _verifier, _params = code_for(signed_in, product)
    other_verifier, _challenge = pkce()
    response = exchange(product, code, other_verifier, **({} if confidential else {"client_id": "webmail"}))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("confidential", [True, False])
def test_4_5_missing_code_verifier_is_refused(signed_in: Client, confidential: bool) -> None:
    product = register("webmail", confidential=confidential)
    code, _verifier, _params = code_for(signed_in, product)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": product.redirect_uri}
    response = Client().post("/oidc/token/", data if confidential else {**data, "client_id": "webmail"},
                             **(product.basic() if confidential else {}))
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_request", "invalid_grant"}


@pytest.mark.parametrize("verifier", ["a" * 42, "a" * 129, "a" * 43 + " ", "é" * 43, "a" * 42 + "+", "a" * 42 + "/"])
def test_4_1_verifier_of_wrong_length_or_characters_is_refused(signed_in: Client, product: Product,
                                                               verifier: str) -> None:
    """§4.1: 43-128 characters of [A-Z a-z 0-9 - . _ ~], even when its challenge was sent."""
    params = authorize_params(product, challenge_of(verifier))
    code = redirect_params(signed_in.get("/oidc/authorize/?" + urlencode(params)))["code"]
    response = exchange(product, code, verifier)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("length", [43, 128])
def test_4_1_verifier_at_the_length_limits_works(signed_in: Client, product: Product, length: int) -> None:
    verifier = ("abcXYZ019-._~" * 20)[:length]
    params = authorize_params(product, challenge_of(verifier))
    code = redirect_params(signed_in.get("/oidc/authorize/?" + urlencode(params)))["code"]
    assert exchange(product, code, verifier).status_code == 200


def test_4_6_a_stolen_code_without_the_verifier_gets_nothing(signed_in: Client, product: Product) -> None:
    """The thief's attempt gives no token and does not spoil the legitimate product's exchange."""
    code, verifier, _params = code_for(signed_in, product)
    refused = exchange(product, code, "x" * 43)
    assert refused.status_code == 400 and "access_token" not in refused.json()
    assert exchange(product, code, verifier).status_code == 200


def test_4_4_1_malformed_challenge_is_refused_before_any_login_page(client: Client, product: Product) -> None:
    params, response = authorize_with(client, product, code_challenge="short")
    assert response["Location"].startswith(product.redirect_uri + "?")
    assert redirect_params(response)["error"] == "invalid_request"


def test_public_client_completes_with_pkce_only(signed_in: Client) -> None:
    product = register("quarantine", confidential=False)
    code, verifier, _params = code_for(signed_in, product)
    response = Client().post("/oidc/token/", {"grant_type": "authorization_code", "code": code,
                                              "redirect_uri": product.redirect_uri, "code_verifier": verifier,
                                              "client_id": product.client_id})
    assert response.status_code == 200 and "id_token" in response.json()
