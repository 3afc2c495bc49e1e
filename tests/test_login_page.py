"""The /login/ page: CSRF, one generic error with equal timing, session rotation, safe `next`, logout."""
from __future__ import annotations

import statistics
import time

import pytest
from django.test import Client

from loginsvc.accounts.authentication import GENERIC_ERROR
from tests.conftest import PASSWORD, csrf_from, login


@pytest.mark.django_db
def test_login_page_is_accessible_html_with_csrf_token(client: Client) -> None:
    response = client.get("/login/")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in body
    assert '<label for="id_username">' in body and '<label for="id_password">' in body
    assert 'autocomplete="current-password"' in body and '<html lang="en">' in body
    policy = response["Content-Security-Policy"]
    # The passkey script only: a file of this origin, no inline script, fetches only to this origin.
    assert "script-src 'self';" in policy and "connect-src 'self';" in policy and "unsafe-eval" not in policy
    assert "<script src=\"/scripts/passkeys.js\" defer></script>" in body and "<script>" not in body
    assert 'autocomplete="username webauthn"' in body  # passkey autofill (conditional mediation)
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_post_without_csrf_token_is_refused(client: Client, user) -> None:
    response = client.post("/login/", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_successful_login_rotates_session_id(client: Client, user) -> None:
    from django.contrib.sessions.backends.cached_db import SessionStore

    client.get("/login/")
    session = client.session
    session["pre_login"] = "x"
    session.save()
    before = client.cookies["loginsvc_sid"].value
    response = login(client, "ANN.example@example.test", PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.cookies["loginsvc_sid"].value != before
    assert not SessionStore(session_key=before).exists(before)  # the old id is dead, not just replaced
    assert client.get("/api/session").json()["email"] == "ann.example@example.test"


@pytest.mark.django_db
def test_unknown_account_and_wrong_password_get_the_same_answer(client: Client, user) -> None:
    wrong = login(client, user.email, "not the password")
    unknown = login(Client(enforce_csrf_checks=True), "nobody@example.test", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert GENERIC_ERROR in wrong.content.decode() and GENERIC_ERROR in unknown.content.decode()
    assert b"not the password" not in wrong.content


@pytest.mark.django_db
def test_unknown_account_costs_a_password_hash_like_a_known_one(user) -> None:
    """Timing must not reveal which accounts exist: both paths run Argon2 once (ratio, not a deadline)."""

    def time_one(email: str) -> float:
        c = Client(enforce_csrf_checks=True)
        token = csrf_from(c)
        started = time.perf_counter()
        c.post("/login/", {"username": email, "password": "wrong password", "csrfmiddlewaretoken": token})
        return time.perf_counter() - started

    samples: dict[str, list[float]] = {user.email: [], "nobody@example.test": []}
    for _ in range(7):  # interleaved, so a burst of load on the machine hits both alike
        for email, timings in samples.items():
            timings.append(time_one(email))
    known, unknown = (statistics.median(t) for t in samples.values())
    assert 0.5 < unknown / known < 2.0, (known, unknown)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "next_url",
    ["/api/session", "/?a=1", "https://webmail.example.test/inbox", "https://admin.example.test:8443/x?y=1"],
)
def test_next_may_point_here_or_to_a_registered_product(client: Client, user, next_url: str) -> None:
    response = login(client, user.email, PASSWORD, next=next_url)
    assert response.status_code == 302 and response["Location"] == next_url


@pytest.mark.django_db
@pytest.mark.parametrize(
    "next_url",
    [
        "//evil.example", "/\\evil.example", "\\\\evil.example", "https:evil.example", "http:/evil.example",
        "https://evil.example/", "https://webmail.example.test.evil.example/", "https://admin.example.test/",
        "javascript:alert(1)", "https://user@webmail.example.test/", "/\t/evil.example", "/\n/evil.example",
        "http://webmail.example.test/", "\x00/x", "https://webmail.example.test@evil.example/",
        "https://[", "http://[::1", "https://webmail.example.test\uff0fevil.example", "https://webmail.example.test:x/",
    ],
)
def test_next_never_redirects_elsewhere(client: Client, user, next_url: str) -> None:
    response = login(client, user.email, PASSWORD, next=next_url)
    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.django_db
@pytest.mark.django_db
@pytest.mark.parametrize("query", ["next=https://%5B", "next=http://[::1", "next=https://a.test%EF%BC%8Fevil.example"])
def test_unparseable_next_on_get_is_ignored_not_an_error(client: Client, query: str) -> None:
    assert client.get("/login/", QUERY_STRING=query).status_code == 200
    assert client.get("/logout/", QUERY_STRING=query).status_code == 200


@pytest.mark.django_db
def test_get_logout_does_not_end_the_session_but_post_does(client: Client, user) -> None:
    login(client, user.email, PASSWORD)
    page = client.get("/logout/")
    assert page.status_code == 200 and b'method="post"' in page.content
    assert client.get("/api/session").json()["authenticated"] is True
    response = client.post("/logout/", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/api/session").json() == {"authenticated": False}


@pytest.mark.django_db
def test_logout_without_csrf_is_refused(client: Client, user) -> None:
    login(client, user.email, PASSWORD)
    assert client.post("/logout/").status_code == 403
    assert client.get("/api/session").json()["authenticated"] is True


@pytest.mark.django_db
def test_home_redirects_anonymous_users_to_login(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/login/"
