"""Helpers of the protocol tests (tests/sso/test_rfc*.py, test_oidc_*.py): ID tokens verified against the
published JWKS, at_hash, the whole code flow in one call, introspection, and a login moved into the past."""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from django.test import Client
from jwcrypto import jwk, jwt

from loginsvc.accounts import sessions
from tests.sso.conftest import Product, code_for, exchange


def verify_id_token(raw: str, product: Product) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of an ID token whose signature checks against the JWKS at /oidc/jwks/."""
    keyset = jwk.JWKSet.from_json(Client().get("/oidc/jwks/").content)
    token = jwt.JWT(jwt=raw, key=keyset, algs=["RS256"], expected_type="JWS",
                    check_claims={"aud": product.client_id})
    return json.loads(token.header), json.loads(token.claims)


def unverified_claims(raw: str) -> dict[str, Any]:
    payload = raw.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def at_hash(access_token: str) -> str:
    """OpenID Connect Core §3.1.3.6: left half of SHA-256 of the ASCII access token, base64url."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def tokens_for(browser: Client, product: Product, **extra: str) -> dict[str, Any]:
    """The token response of a whole code flow for a signed-in browser (asserting it succeeded)."""
    code, verifier, _params = code_for(browser, product, **extra)
    response = exchange(product, code, verifier)
    assert response.status_code == 200, response.content
    return response.json()


def introspect(product: Product, value: str) -> dict[str, Any]:
    response = Client().post("/oidc/introspect/", {"token": value}, **product.basic())
    assert response.status_code == 200, response.content
    return response.json()


def bearer(value: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {value}"}


def age_login(browser: Client, seconds: int) -> int:
    """Move this browser's login `seconds` into the past (as tests/test_sessions.py does); its new time."""
    session = browser.session
    session[sessions.AUTH_TIME] -= seconds
    session[sessions.TOUCHED] -= seconds
    session.save()
    return session[sessions.AUTH_TIME]
