"""Forwarded headers are believed only from LOGINSVC_TRUSTED_PROXIES: a direct peer is counted as itself."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client, RequestFactory, override_settings

from loginsvc.accounts import fast_session
from loginsvc.accounts.client_ip import client_ip
from sharedlib.networks import parse_ranges
from tests.conftest import PASSWORD, csrf_from, login
from tests.test_session_fast_path import compare, environ_for

DIRECT = "198.51.100.7"  # a client that reached the node port itself, not through the router


@pytest.fixture
def behind_router(settings) -> Iterator[None]:
    """Production's set-up: one trusted hop, the router on loopback (the default ranges)."""
    with override_settings(LOGINSVC={**settings.LOGINSVC, "TRUSTED_PROXY_HOPS": 1}):
        yield


def post_wrong_password(email: str, remote: str, forwarded: str) -> int:
    c = Client(enforce_csrf_checks=True, REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    return c.post("/login/", {"username": email, "password": "wrong password",
                              "csrfmiddlewaretoken": csrf_from(c)}).status_code


@pytest.mark.parametrize(
    ("remote", "xff", "expected"),
    [
        (DIRECT, "203.0.113.9", DIRECT),              # untrusted peer: its own address
        ("10.0.0.9", "203.0.113.9", "10.0.0.9"),      # a private address is not trusted by default either
        ("127.0.0.1", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the router on loopback: its hop
        ("::1", "2001:db8::1", "2001:db8::1"),
        ("::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9"),    # IPv4-mapped loopback is loopback
    ],
)
def test_forwarded_for_counts_only_from_a_trusted_peer(behind_router, remote: str, xff: str, expected: str) -> None:
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR=xff, REMOTE_ADDR=remote)
    assert client_ip(request) == expected


@pytest.mark.django_db
def test_a_direct_peer_rotating_forwarded_for_is_locked_as_itself(behind_router, user) -> None:
    statuses = [post_wrong_password(user.email, DIRECT, f"203.0.113.{i}") for i in range(10)]
    assert statuses == [401] * 10
    c = Client(enforce_csrf_checks=True, REMOTE_ADDR=DIRECT, HTTP_X_FORWARDED_FOR="203.0.113.200")
    assert login(c, user.email, PASSWORD).status_code == 429  # the ten guesses all counted for DIRECT


@pytest.mark.django_db
def test_a_trusted_proxys_forwarded_for_is_the_client(behind_router, user) -> None:
    assert [post_wrong_password(user.email, "127.0.0.1", "203.0.113.5") for _ in range(10)] == [401] * 10
    locked = Client(enforce_csrf_checks=True, HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert login(locked, user.email, PASSWORD).status_code == 429
    other = Client(enforce_csrf_checks=True, HTTP_X_FORWARDED_FOR="203.0.113.6")
    assert login(other, user.email, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_configured_ranges_replace_loopback(settings, user) -> None:
    ranges = parse_ranges("10.20.0.0/16, fd00::/8")
    with override_settings(LOGINSVC={**settings.LOGINSVC, "TRUSTED_PROXY_HOPS": 1, "TRUSTED_PROXIES": ranges}):
        assert client_ip(RequestFactory().get("/", REMOTE_ADDR="10.20.3.4", HTTP_X_FORWARDED_FOR="192.0.2.1")) == "192.0.2.1"
        assert client_ip(RequestFactory().get("/", REMOTE_ADDR="fd00::5", HTTP_X_FORWARDED_FOR="192.0.2.1")) == "192.0.2.1"
        assert client_ip(RequestFactory().get("/", HTTP_X_FORWARDED_FOR="192.0.2.1")) == "127.0.0.1"


def test_bad_ranges_are_refused_with_the_entry_named() -> None:
    assert str(parse_ranges("")) == "(none)"
    assert "::1" in parse_ranges("::1")
    with pytest.raises(ValueError, match=r"'10.0.0.300/8' is not an address range"):
        parse_ranges("10.0.0.0/8,10.0.0.300/8")
    with pytest.raises(ValueError, match="host bits set"):
        parse_ranges("10.0.0.1/8")


PRODUCTION_TLS = dict(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), SECURE_SSL_REDIRECT=True)


@pytest.mark.django_db
def test_an_untrusted_peer_cannot_claim_https() -> None:
    with override_settings(**PRODUCTION_TLS):
        direct = Client(REMOTE_ADDR=DIRECT).get("/login/", HTTP_X_FORWARDED_PROTO="https")
        assert direct.status_code == 301 and direct["Location"].startswith("https://")
        assert Client().get("/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200  # the router may


@pytest.mark.django_db
def test_the_session_fast_path_drops_an_untrusted_peers_forwarded_proto(client: Client) -> None:
    client.get("/api/session")
    cookies = {"csrftoken": client.cookies["csrftoken"].value}
    with override_settings(**PRODUCTION_TLS):
        apps = (fast_session.wrap(WSGIHandler()), WSGIHandler())
        answer = compare(apps, lambda: environ_for(cookies, REMOTE_ADDR=DIRECT, HTTP_X_FORWARDED_PROTO="https"),
                         "request")
        assert answer.status.startswith("301")
        compare(apps, lambda: environ_for(cookies, HTTP_X_FORWARDED_PROTO="https"), "served")
