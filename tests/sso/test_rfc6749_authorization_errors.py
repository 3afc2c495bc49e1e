"""RFC 6749 §4.1.2.1 (and §3.1.2 exact redirect URIs): a bad authorization request is an error page or an error
redirect to the registered URI, never a redirect to an address the product did not register."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.test import Client

from tests.sso.conftest import Product, authorize, authorize_params, pkce, redirect_params

NEAR_MISSES = [
    "https://webmail.example.test/callback/",            # trailing slash
    "https://WEBMAIL.example.test/callback",             # different case (host)
    "https://webmail.example.test/Callback",             # different case (path)
    "https://webmail.example.test/callback/extra",       # extra path
    "https://webmail.example.test/callback?x=1",         # query added
    "https://webmail.example.test:8443/callback",        # different port
    "https://webmail.example.test:443/callback",         # default port spelled out
    "http://webmail.example.test/callback",              # http instead of https
    "https://evil@webmail.example.test/callback",        # userinfo
    "https://webmail.example.test@evil.test/callback",   # userinfo, other host
    "https://webmail.example.test/callback#frag",        # fragment
    "https://webmail.example.test.evil.test/callback",   # suffix host
    "https://evil.test/callback",                        # other host
    "//evil.test/callback",                              # scheme-relative
    "/callback",                                         # relative
    "javascript:alert(1)",
]


def assert_error_page(response) -> None:
    """Our error page: a 4xx that says so, and no Location at all (nothing is redirected anywhere)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.get("Location"))
    assert "Location" not in response
    assert b"cannot be completed" in response.content


@pytest.mark.parametrize("redirect_uri", NEAR_MISSES)
def test_4_1_2_1_unregistered_or_near_miss_redirect_uri_is_an_error_page(signed_in: Client, product: Product,
                                                                         redirect_uri: str) -> None:
    _verifier, challenge = pkce()
    response = authorize(signed_in, product, challenge, redirect_uri=redirect_uri)
    assert_error_page(response)


@pytest.mark.parametrize("redirect_uri", NEAR_MISSES[:4] + ["https://evil.test/callback"])
def test_4_1_2_1_near_miss_before_login_is_an_error_page_not_the_login_page(client: Client, product: Product,
                                                                            redirect_uri: str) -> None:
    """Nobody is asked for a password for a request that cannot succeed (and nothing is redirected)."""
    _verifier, challenge = pkce()
    response = authorize(client, product, challenge, redirect_uri=redirect_uri)
    assert_error_page(response)


@pytest.mark.parametrize("prompt", ["none", "login"])
def test_4_1_2_1_near_miss_with_prompt_is_an_error_page(client: Client, product: Product, prompt: str) -> None:
    _verifier, challenge = pkce()
    response = authorize(client, product, challenge, redirect_uri="https://evil.test/callback", prompt=prompt)
    assert_error_page(response)


def test_4_1_2_1_redirect_uri_of_another_product_is_refused(signed_in: Client, product: Product) -> None:
    from tests.sso.conftest import register

    other = register("admin-portal")
    _verifier, challenge = pkce()
    assert_error_page(authorize(signed_in, product, challenge, redirect_uri=other.redirect_uri))


def test_4_1_2_1_missing_redirect_uri_is_an_error_page(signed_in: Client, product: Product) -> None:
    """OpenID Connect Core §3.1.2.1: redirect_uri is REQUIRED, even with one URI registered."""
    _verifier, challenge = pkce()
    assert_error_page(authorize(signed_in, product, challenge, redirect_uri=None))


@pytest.mark.parametrize("client_id", ["unknown-product", "", "webmail ", "WEBMAIL", "x" * 300, "web\x00mail"])
def test_4_1_2_1_unknown_client_id_is_an_error_page(signed_in: Client, product: Product, client_id: str) -> None:
    _verifier, challenge = pkce()
    response = authorize(signed_in, product, challenge, client_id=client_id)
    assert_error_page(response)


def test_4_1_2_1_missing_client_id_is_an_error_page(signed_in: Client, product: Product) -> None:
    _verifier, challenge = pkce()
    assert_error_page(authorize(signed_in, product, challenge, client_id=None))


def test_4_1_2_1_missing_response_type_is_invalid_request_to_the_registered_uri(signed_in: Client,
                                                                              product: Product) -> None:
    _verifier, challenge = pkce()
    params = authorize_params(product, challenge, response_type=None)
    response = signed_in.get("/oidc/authorize/?" + urlencode(params))
    assert response["Location"].startswith(product.redirect_uri + "?")
    got = redirect_params(response)
    assert got["error"] == "invalid_request"
    assert got["state"] == params["state"]
    assert "code" not in got


@pytest.mark.parametrize("response_type", ["token", "id_token", "id_token token", "code token", "code id_token",
                                           "none", "garbage"])
def test_4_1_2_1_unsupported_response_type_is_an_error_redirect_with_state(signed_in: Client, product: Product,
                                                                           response_type: str) -> None:
    _verifier, challenge = pkce()
    params = authorize_params(product, challenge, response_type=response_type)
    response = signed_in.get("/oidc/authorize/?" + urlencode(params))
    assert response["Location"].startswith(product.redirect_uri), response["Location"]
    got = redirect_params(response) if "?" in response["Location"] else {}
    assert got.get("error") in {"unsupported_response_type", "unauthorized_client", "invalid_request"}, got
    assert got.get("state") == params["state"]
    assert "code" not in got and "access_token" not in response["Location"] and "id_token=" not in response["Location"]


@pytest.mark.parametrize("scope", ["openid admin", "superpowers", "openid\x00email"])
def test_4_1_2_1_invalid_scope_is_an_error_redirect_with_state(signed_in: Client, product: Product,
                                                               scope: str) -> None:
    _verifier, challenge = pkce()
    params = authorize_params(product, challenge, scope=scope)
    response = signed_in.get("/oidc/authorize/?" + urlencode(params))
    assert response.status_code in (302, 400), response.status_code
    if response.status_code == 302:
        assert response["Location"].startswith(product.redirect_uri + "?")
        got = redirect_params(response)
        assert got["error"] == "invalid_scope" and got["state"] == params["state"]
        assert "code" not in got


def test_4_1_2_1_error_redirect_carries_the_issuer(signed_in: Client, product: Product) -> None:
    """RFC 9207 §2: every authorization response, errors too, names the issuer."""
    from tests.sso.conftest import ISSUER

    _verifier, challenge = pkce()
    params = authorize_params(product, challenge, scope="superpowers")
    response = signed_in.get("/oidc/authorize/?" + urlencode(params))
    got = redirect_params(response)
    assert got["error"] == "invalid_scope" and got.get("iss") == ISSUER
    assert response["Location"].count("iss=") == 1


def test_4_1_2_1_refusals_are_logged_without_the_challenge(signed_in: Client, product: Product, caplog) -> None:
    _verifier, challenge = pkce()
    with caplog.at_level("INFO", logger="loginsvc.audit"):
        authorize(signed_in, product, challenge, redirect_uri="https://evil.test/callback")
    refused = [r for r in caplog.records if r.getMessage() == "sso: refused"]
    assert refused and refused[0].endpoint == "authorize"
    assert challenge not in caplog.text


@pytest.mark.parametrize("junk", ["%ff%fe", "%00", "a" * 9000])
def test_4_1_2_1_malformed_parameters_are_4xx_not_500(signed_in: Client, product: Product, junk: str) -> None:
    _verifier, challenge = pkce()
    query = urlencode(authorize_params(product, challenge)) + "&state=" + junk
    response = signed_in.get("/oidc/authorize/?" + query)
    assert response.status_code < 500


@pytest.mark.parametrize("name,second", [("client_id", "admin-portal"), ("redirect_uri", "https://evil.test/cb"),
                                         ("response_type", "token"), ("state", "other")])
def test_3_1_repeated_parameter_is_an_error_page(signed_in: Client, product: Product, name: str,
                                                 second: str) -> None:
    """§3.1: parameters MUST NOT be included more than once; which one would count is ambiguous."""
    _verifier, challenge = pkce()
    query = urlencode(authorize_params(product, challenge)) + "&" + urlencode({name: second})
    response = signed_in.get("/oidc/authorize/?" + query)
    assert response.status_code == 400
    assert "Location" not in response
