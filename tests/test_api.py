"""GET /api/session and POST /api/login: JSON answers, clear 4xx for malformed requests."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import PASSWORD, csrf_from


def api_login(client: Client, body: bytes | str, content_type: str = "application/json", token: str | None = ""):
    headers = {} if token is None else {"HTTP_X_CSRFTOKEN": token or csrf_from(client)}
    return client.post("/api/login", body, content_type=content_type, **headers)


@pytest.mark.django_db
def test_anonymous_session_is_not_authenticated(client: Client) -> None:
    response = client.get("/api/session")
    assert response.status_code == 200 and response.json() == {"authenticated": False}
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_api_login_then_session_reports_the_user(client: Client, user) -> None:
    response = api_login(client, f'{{"username": "{user.email.upper()}", "password": "{PASSWORD}"}}')
    assert response.status_code == 200 and response.json() == {"authenticated": True, "email": user.email}
    data = client.get("/api/session").json()
    assert data["authenticated"] is True and data["email"] == user.email and data["user_id"] == user.pk
    assert data["expires_at"] > data["auth_time"]


@pytest.mark.django_db
def test_api_login_wrong_password_is_401_with_generic_error(client: Client, user) -> None:
    response = api_login(client, f'{{"username": "{user.email}", "password": "nope nope"}}')
    assert response.status_code == 401 and response.json()["error"].startswith("Invalid email address or password")


@pytest.mark.django_db
def test_api_login_without_csrf_is_403_json(client: Client, user) -> None:
    response = api_login(client, f'{{"username": "{user.email}", "password": "{PASSWORD}"}}', token=None)
    assert response.status_code == 403 and "CSRF" in response.json()["error"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"\xff\xfe\xfa", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"username": 1, "password": []}', "application/json", 400),
        (b'{"username": "a@b.test"}', "application/json", 400),
        (b"username=a&password=b", "application/x-www-form-urlencoded", 415),
        (b'{"username": "a@b.test", "password": "' + b"x" * 9000 + b'"}', "application/json", 413),
        (b'{"username": "a\\u0000@b.test", "password": "x"}', "application/json", 401),
        (b'{"username": "\\ud800@x.test", "password": "x"}', "application/json", 400),
        (b'{"username": "ann@example.test", "password": "\\udc80"}', "application/json", 400),
    ],
)
def test_malformed_api_login_gets_clear_4xx(client: Client, body: bytes, content_type: str, status: int) -> None:
    response = api_login(client, body, content_type)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json" and response.json()["error"]


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_api_session_rejects_other_methods(client: Client, method: str) -> None:
    response = getattr(client, method)("/api/session", HTTP_X_CSRFTOKEN=csrf_from(client))
    assert response.status_code == 405 and "GET" in response["Allow"]


@pytest.mark.django_db
def test_api_login_rejects_get(client: Client) -> None:
    assert client.get("/api/login").status_code == 405
