"""Bad input never gives a 500: a clear 4xx, nothing logged as an error, and nothing lost."""
from __future__ import annotations

import logging

import pytest
from django.test import Client

from tests.conftest import PASSWORD, csrf_from


@pytest.fixture(autouse=True)
def _no_error_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def form_post(client: Client, body: bytes, content_type: str = "application/x-www-form-urlencoded", path="/login/"):
    token = csrf_from(client)
    return client.generic("POST", path, body, content_type=content_type, HTTP_X_CSRFTOKEN=token)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"username=" + b"a" * 5000 + b"@x.test&password=x", 400),  # over max_length
        (b"username=a%00b%40x.test&password=x", 400),  # NUL in a field
        (b"username=a%40x.test&password=" + b"p" * 2000, 400),  # password over 1024
        (b"username=\xff\xfe%40x.test&password=\xc3\x28", 401),  # invalid UTF-8: replaced, just wrong
        (b"username=a%40x.test&password=x" + b"&f=1" * 60, 400),  # too many fields
        (b"x=" + b"y" * 70000, 400),  # body over DATA_UPLOAD_MAX_MEMORY_SIZE
        (b"%%%%&&&===", 400),  # garbage: fields missing
    ],
)
def test_bad_form_bodies_get_4xx(client: Client, user, body: bytes, status: int) -> None:
    response = form_post(client, body)
    assert response.status_code == status


@pytest.mark.django_db
def test_broken_multipart_is_400(client: Client) -> None:
    response = form_post(client, b"--xx\r\nbroken", content_type="multipart/form-data; boundary=xx")
    assert response.status_code == 400


@pytest.mark.django_db
def test_multipart_without_boundary_is_400(client: Client) -> None:
    response = form_post(client, b"anything", content_type="multipart/form-data")
    assert response.status_code == 400


@pytest.mark.django_db
def test_disallowed_host_is_400(client: Client) -> None:
    assert client.get("/login/", HTTP_HOST="evil.example").status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [("PUT", "/login/"), ("DELETE", "/logout/"), ("PATCH", "/"),
                                               ("POST", "/healthz"), ("TRACE", "/api/session")])
def test_unsupported_methods_are_405(client: Client, method: str, path: str) -> None:
    response = client.generic(method, path, HTTP_X_CSRFTOKEN=csrf_from(client))
    assert response.status_code == 405


@pytest.mark.django_db
def test_unknown_path_is_404(client: Client) -> None:
    assert client.get("/wp-admin/").status_code == 404


@pytest.mark.django_db
def test_invalid_utf8_in_path_and_query_is_handled(client: Client) -> None:
    assert client.get("/login/%ff%fe").status_code == 404
    assert client.get("/login/", QUERY_STRING="next=%ff%fe&x=%c3%28").status_code == 200


@pytest.mark.django_db
def test_bad_input_loses_nothing(client: Client, user) -> None:
    """After a run of garbage the same browser can still log in: no state was broken."""
    form_post(client, b"username=a%00b&password=x")
    form_post(client, b"\xff" * 100)
    response = form_post(client, f"username={user.email}&password={PASSWORD}".encode())
    assert response.status_code == 302
    assert client.get("/api/session").json()["authenticated"] is True
