"""Sessions: Redis in front of the database, idle and absolute lifetimes, survival of a Redis loss."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client, override_settings
from django.utils import timezone

from loginsvc.accounts import sessions
from tests import plugin
from tests.conftest import PASSWORD, login


def age_session(client: Client, **shift: int) -> None:
    session = client.session
    for key, seconds in shift.items():
        session[key] = session[key] - seconds
    session.save()


@pytest.mark.django_db
def test_session_is_written_to_redis_and_the_database(client: Client, user) -> None:
    login(client, user.email, PASSWORD)
    key = client.cookies["loginsvc_sid"].value
    assert Session.objects.filter(session_key=key).exists()
    assert any(key.encode() in k for k in plugin.REDIS.client().keys("*"))


@pytest.mark.django_db
def test_session_cookie_is_httponly_lax_and_expires_with_idle_timeout(client: Client, user) -> None:
    response = login(client, user.email, PASSWORD)
    cookie = response.cookies["loginsvc_sid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == 1800


@pytest.mark.django_db
def test_absolute_lifetime_ends_the_session(client: Client, user) -> None:
    login(client, user.email, PASSWORD)
    age_session(client, **{sessions.AUTH_TIME: 36000, sessions.TOUCHED: 10})
    assert client.get("/api/session").json() == {"authenticated": False}


@pytest.mark.django_db
def test_activity_pushes_idle_expiry_forward_at_most_once_a_minute(client: Client, user) -> None:
    login(client, user.email, PASSWORD)
    first = client.get("/api/session").json()["expires_at"]
    assert client.get("/api/session").json()["expires_at"] == first  # no write within the minute
    age_session(client, **{sessions.AUTH_TIME: 600, sessions.TOUCHED: 600})
    data = client.get("/api/session").json()
    assert data["authenticated"] is True
    assert data["expires_at"] >= int(time.time()) + 1800 - 5


@pytest.mark.django_db
def test_configured_idle_timeout_is_used(client: Client, user, settings) -> None:
    with override_settings(LOGINSVC={**settings.LOGINSVC, "SESSION_IDLE_SECONDS": 120}):
        response = login(client, user.email, PASSWORD)
        assert int(response.cookies["loginsvc_sid"]["max-age"]) == 120


@pytest.mark.django_db
def test_logged_in_user_survives_redis_data_loss(client: Client, user) -> None:
    login(client, user.email, PASSWORD)
    plugin.REDIS.client().flushall()
    assert client.get("/api/session").json()["authenticated"] is True


@pytest.mark.django_db
def test_logged_in_user_stays_logged_in_while_redis_is_down(client: Client, user, settings, own_redis) -> None:
    caches = {"default": {**settings.CACHES["default"], "LOCATION": own_redis.url}}
    with override_settings(CACHES=caches):
        login(client, user.email, PASSWORD)
        own_redis.kill()
        assert client.get("/api/session").json()["authenticated"] is True
        # A new login works too while Redis is down.
        other = Client(enforce_csrf_checks=True)
        assert login(other, user.email, PASSWORD).status_code == 302
        assert other.get("/api/session").json()["authenticated"] is True


@pytest.mark.django_db
def test_idle_session_expires_on_the_server_not_only_in_the_cookie(client: Client, user) -> None:
    login(client, user.email, PASSWORD)
    key = client.cookies["loginsvc_sid"].value
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    plugin.REDIS.client().delete(*[k for k in plugin.REDIS.client().keys("*") if key.encode() in k])
    assert client.get("/api/session").json() == {"authenticated": False}
