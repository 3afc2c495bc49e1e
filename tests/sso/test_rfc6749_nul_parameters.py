"""RFC 6749 §4.1.2.1 / §5.2: a NUL in any parameter of any endpoint is invalid_request, never a 500.

PostgreSQL cannot compare text holding NUL (DataError), so without a check before the first lookup
these were 500s there (the CI's PostgreSQL pass found it); SQLite runs prove the answers' shape."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.sso.conftest import Product

BAD = "web\x00mail"


@pytest.mark.parametrize(("method", "path", "data"), [
    ("get", "/oidc/authorize/", {"client_id": BAD, "response_type": "code"}),
    ("get", "/oidc/logout/", {"client_id": BAD}),
    ("post", "/oidc/token/", {"grant_type": "authorization_code", "code": "a\x00b", "client_id": BAD}),
    ("post", "/oidc/revoke/", {"token": "x", "client_id": BAD}),
    ("post", "/oidc/introspect/", {"token": "x", "client_id": BAD, "client_secret": "y"}),
    ("get", "/oidc/userinfo/", {"x": BAD}),
])
def test_a_nul_anywhere_is_invalid_request(product: Product, method: str, path: str, data: dict[str, str]) -> None:
    response = getattr(Client(), method)(path, data)
    assert response.status_code == 400 and "Location" not in response
    if response["Content-Type"].startswith("application/json"):
        assert response.json()["error"] == "invalid_request"
    else:
        assert b"cannot be completed" in response.content
