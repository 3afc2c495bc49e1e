"""/healthz is alive, /readyz checks the database and Redis, /metrics is only for scrapers."""
from __future__ import annotations

import pytest
from django.test import Client, override_settings

from tests.conftest import PASSWORD, login


@pytest.mark.django_db
def test_healthz_is_200_without_touching_dependencies(client: Client) -> None:
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")  # probes use the pod IP as host
    assert response.status_code == 200 and response.json() == {"status": "alive"}


@pytest.mark.django_db
def test_readyz_is_200_when_database_and_redis_answer(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


@pytest.mark.django_db
def test_readyz_is_503_with_reason_when_redis_is_down(client: Client, settings, own_redis) -> None:
    own_redis.kill()
    with override_settings(CACHES={"default": {**settings.CACHES["default"], "LOCATION": own_redis.url}}):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable" and response.json()["reason"].startswith("redis: error")
    assert response["Retry-After"] == "1"


@pytest.mark.django_db
def test_metrics_expose_latency_and_login_outcomes(client: Client, user) -> None:
    login(client, user.email, PASSWORD)
    login(Client(enforce_csrf_checks=True), user.email, "wrong password")
    text = client.get("/metrics").content.decode()
    assert 'loginsvc_request_duration_seconds_bucket{le="0.001",method="GET",status="200",view="api-session"}' in text
    assert 'loginsvc_logins_total{channel="form",outcome="success"}' in text
    assert 'loginsvc_logins_total{channel="form",outcome="failure"}' in text


@pytest.mark.django_db
def test_metrics_are_refused_through_a_proxy_without_token(client: Client, settings) -> None:
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="1.2.3.4").status_code == 403
    assert client.get("/metrics", HTTP_X_FORWARDED_PROTO="https").status_code == 403
    with override_settings(LOGINSVC={**settings.LOGINSVC, "METRICS_TOKEN": "s3cret-token"}):
        assert client.get("/metrics").status_code == 403
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200


@pytest.mark.django_db
def test_readyz_answers_503_within_its_timeout_when_redis_hangs(client: Client, settings) -> None:
    """A Redis that accepts connections but never answers must not hang the probe."""
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    try:
        with override_settings(CACHES={"default": {**settings.CACHES["default"], "LOCATION": url}},
                               LOGINSVC={**settings.LOGINSVC, "READY_TIMEOUT_SECONDS": 0.1}):
            started = time.monotonic()
            response = client.get("/readyz")
            elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "error: no answer within 0.1s"
    assert elapsed < 0.2 + 0.5  # the timeout plus generous scheduling slack, far below a hang

