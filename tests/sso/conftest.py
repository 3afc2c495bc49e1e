"""Fixtures for the provider's tests: registered products, PKCE pairs, and the code flow step by step.

In-process tests drive the real Django stack with Django's test client (every middleware, the real
Redis and database); tests/sso/test_e2e_*.py and tests/stack/ drive real nodes and the router.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client

from tests.conftest import PASSWORD, login

SECRET = "s3cret-for-the-tests-" + "x" * 24
ISSUER = "http://127.0.0.1:8000"


@dataclass
class Product:
    client_id: str
    secret: str
    redirect_uri: str
    application: Any

    def basic(self, secret: str | None = None) -> dict[str, str]:
        raw = f"{self.client_id}:{self.secret if secret is None else secret}".encode()
        return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(raw).decode()}


def register(client_id: str = "webmail", confidential: bool = True, first_party: bool = True,
             backchannel: str = "", post_logout: str = "") -> Product:
    from oauth2_provider.models import Application

    from loginsvc.sso.models import Product as ProductRow

    redirect_uri = f"https://{client_id}.example.test/callback"
    application = Application.objects.create(
        client_id=client_id, name=client_id.title(), client_secret=SECRET if confidential else "",
        client_type=Application.CLIENT_CONFIDENTIAL if confidential else Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris=redirect_uri,
        post_logout_redirect_uris=post_logout or f"https://{client_id}.example.test/",
        skip_authorization=first_party, algorithm=Application.RS256_ALGORITHM, hash_client_secret=True,
    )
    ProductRow.objects.create(application=application, backchannel_logout_uri=backchannel)
    return Product(client_id, SECRET if confidential else "", redirect_uri, application)


@pytest.fixture
def product(db: None) -> Product:
    return register()


def pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) as RFC 7636 §4.1-4.2 define them."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(product: Product, challenge: str, **extra: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": product.client_id, "redirect_uri": product.redirect_uri,
              "scope": "openid email profile", "state": "st-" + secrets.token_hex(4),
              "nonce": "n-" + secrets.token_hex(4), "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def authorize(client: Client, product: Product, challenge: str, **extra: str):
    return client.get("/oidc/authorize/?" + urlencode(authorize_params(product, challenge, **extra)))


def redirect_params(response: Any) -> dict[str, str]:
    """The query of a redirect to the product, one value per name."""
    assert response.status_code == 302, (response.status_code, response.content[:300])
    return {k: v[0] for k, v in parse_qs(urlsplit(response["Location"]).query).items()}


@pytest.fixture
def signed_in(client: Client, user: Any) -> Client:
    """A browser signed in at the central login page."""
    assert login(client, user.email, PASSWORD).status_code == 302
    return client


def code_for(client: Client, product: Product, **extra: str) -> tuple[str, str, dict[str, str]]:
    """(code, verifier, params) for a signed-in browser: the code flow up to the redirect back."""
    verifier, challenge = pkce()
    params = authorize_params(product, challenge, **extra)
    response = client.get("/oidc/authorize/?" + urlencode(params))
    got = redirect_params(response)
    assert got["state"] == params["state"], got
    return got["code"], verifier, params


def token(product: Product, secret: str | None = None, **data: str):
    """POST /oidc/token/ as the product's back end (client_secret_basic)."""
    return Client().post("/oidc/token/", data, **(product.basic(secret) if product.secret or secret else {}))


def exchange(product: Product, code: str, verifier: str, **extra: str):
    return token(product, grant_type="authorization_code", code=code, redirect_uri=product.redirect_uri,
                 code_verifier=verifier, **extra)
