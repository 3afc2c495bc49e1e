"""OpenID Connect Discovery 1.0 §4 (and RFC 8414, RFC 7517): one document at the root and under /oidc/, every URL
the issuer's (the router's origin, never a node's), S256 only, the endpoints products need."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.sso.conftest import ISSUER

PATHS = ["/.well-known/openid-configuration", "/oidc/.well-known/openid-configuration"]
ENDPOINTS = ["authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "revocation_endpoint",
             "introspection_endpoint", "end_session_endpoint", "device_authorization_endpoint"]


def discovery(path: str, **headers: str) -> dict:
    response = Client().get(path, **headers)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    return response.json()


def urls_in(document: dict) -> list[str]:
    return [v for v in document.values() if isinstance(v, str) and v.startswith(("http://", "https://"))]


@pytest.mark.parametrize("path", PATHS)
def test_4_2_issuer_and_every_url_start_with_the_issuer(db: None, path: str) -> None:
    document = discovery(path)
    assert document["issuer"] == ISSUER
    for name in ENDPOINTS:
        assert document[name].startswith(ISSUER + "/"), (name, document[name])
    for url in urls_in(document):
        assert url == ISSUER or url.startswith(ISSUER + "/"), url


def test_4_2_the_same_document_at_the_root_and_under_the_prefix(db: None) -> None:
    assert discovery(PATHS[0]) == discovery(PATHS[1])


@pytest.mark.parametrize("path", PATHS)
def test_4_2_urls_do_not_follow_the_requests_host(db: None, path: str) -> None:
    """A node reached directly (or a forged Host) still advertises the router's URLs."""
    document = discovery(path, HTTP_HOST="127.0.0.1:9999")
    assert all(url.startswith(ISSUER) for url in urls_in(document))
    assert "9999" not in str(document)


def test_3_endpoints_products_need(db: None) -> None:
    document = discovery(PATHS[0])
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["backchannel_logout_supported"] is True
    assert document["backchannel_logout_session_supported"] is True
    assert document["response_types_supported"] == ["code"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert set(document["grant_types_supported"]) == {"authorization_code", "refresh_token",
                                                      "urn:ietf:params:oauth:grant-type:device_code"}  # RFC 8628 §4
    assert {"openid", "email", "profile"} <= set(document["scopes_supported"])
    assert {"sub", "email", "email_verified", "name", "sid", "auth_time"} <= set(document["claims_supported"])
    # Confidential products authenticate with their secret; public ones ("none") only with PKCE.
    assert set(document["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "none"}
    assert "public" in document["subject_types_supported"]
    assert document["authorization_response_iss_parameter_supported"] is True  # RFC 9207: iss on every answer
    assert {"none", "login"} <= set(document["prompt_values_supported"])


def test_the_advertised_endpoints_are_served_here(db: None) -> None:
    """Each URL in the document, with the issuer's origin removed, is one of our paths (not a 404)."""
    document = discovery(PATHS[0])
    for name in ENDPOINTS:
        path = document[name][len(ISSUER):]
        response = Client().get(path)
        assert response.status_code != 404, (name, path)


def test_jwks_publishes_the_signing_key_as_rs256_public_keys_only(db: None) -> None:
    from loginsvc.sso import keys

    response = Client().get("/oidc/jwks/")
    published = response.json()["keys"]
    assert keys.ring().signing_key().kid in [k["kid"] for k in published]
    for key in published:
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)  # no private parts


def test_jwks_may_be_cached_for_less_than_the_publish_delay(db: None, settings) -> None:
    """Products cache the key set (docs/sso.md), but never past the delay between a key's publication
    and its first signature, so a rotated-in key is in every cache before a token carries its kid."""
    publish = settings.LOGINSVC["OIDC_KEY_PUBLISH_SECONDS"]
    directives = {d.strip() for d in Client().get("/oidc/jwks/")["Cache-Control"].split(",")}
    assert "no-store" not in directives and "private" not in directives and "public" in directives
    (max_age,) = [int(d.split("=")[1]) for d in directives if d.startswith("max-age=")]
    assert 0 < max_age < publish
    settings.LOGINSVC = {**settings.LOGINSVC, "OIDC_KEY_PUBLISH_SECONDS": 1}
    assert Client().get("/oidc/jwks/")["Cache-Control"] == "no-cache"


def test_public_products_may_revoke_so_none_is_an_auth_method_of_revocation(db: None) -> None:
    document = Client().get(PATHS[0]).json()
    assert "none" in document["revocation_endpoint_auth_methods_supported"]
    assert "none" not in document["introspection_endpoint_auth_methods_supported"]


def test_discovery_is_cacheable_and_readable_cross_origin(db: None) -> None:
    response = Client().get(PATHS[0])
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "max-age" in response["Cache-Control"]
