"""/healthz is alive, /readyz checks the database and Redis, /metrics is only for scrapers."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests
from django.test import Client, override_settings

from tests import plugin
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


@contextmanager
def silent_redis(settings, **options: float) -> Iterator[None]:
    """Settings pointing at a "Redis" that accepts connections but never answers, with `options`."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    try:
        with override_settings(CACHES={"default": {**settings.CACHES["default"], "LOCATION": url}},
                               LOGINSVC={**settings.LOGINSVC, **options}):
            yield
    finally:
        silent.close()


@pytest.mark.django_db
def test_readyz_answers_503_within_its_timeout_when_redis_hangs(client: Client, settings) -> None:
    """A Redis that accepts connections but never answers must not hang the probe."""
    with silent_redis(settings, READY_TIMEOUT_SECONDS=0.1):
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "error: no answer within 0.1s"
    assert elapsed < 0.2 + 0.5  # the timeout plus generous scheduling slack, far below a hang


def pings(server) -> int:
    """PINGs a Redis has answered: one per readiness check that reached it."""
    return int(server.client().info("commandstats").get("cmdstat_ping", {}).get("calls", 0))


@pytest.fixture
def fresh_readiness() -> None:
    from loginsvc.health import checks

    checks.READINESS.reset()


@pytest.mark.django_db(transaction=True)
def test_concurrent_readyz_calls_share_one_round_of_checks(fresh_readiness) -> None:
    from loginsvc.health import checks

    before = pings(plugin.REDIS)
    barrier = threading.Barrier(40)
    answers: list[tuple[bool, dict[str, str]]] = []

    def probe() -> None:
        barrier.wait()
        answers.append(checks.run_all())

    threads = [threading.Thread(target=probe) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [(True, {"database": "ok", "redis": "ok"})] * 40
    assert pings(plugin.REDIS) - before == 1  # one round for 40 callers, all within the cache time


@pytest.mark.django_db
def test_a_hung_check_is_never_queued_twice(client: Client, settings, fresh_readiness) -> None:
    """Against a Redis that never answers, repeated probes wait on the one stuck check."""
    from loginsvc.health import checks

    with silent_redis(settings, READY_TIMEOUT_SECONDS=0.05, READINESS_CACHE_SECONDS=0.01):
        for _ in range(10):
            assert client.get("/readyz").status_code == 503
            assert checks._threads["redis"]._work_queue.qsize() == 0  # nothing waits behind the stuck one


def test_a_readyz_flood_on_a_real_node_runs_bounded_checks_and_still_sees_redis_go(stack, own_redis) -> None:
    """200 probes from 20 clients cost a handful of checks, and a dead Redis still shows within
    the cache time plus one check."""
    node = stack("blue-1", redis_url=own_redis.url)
    assert requests.get(node.url + "/readyz", timeout=5).status_code == 200
    time.sleep(0.3)      # past the 0.25 s cache: the flood's first probe runs a check of its own
    before, started = pings(own_redis), time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: requests.get(node.url + "/readyz", timeout=5).status_code, range(200)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 200
    checks_run = pings(own_redis) - before
    assert 1 <= checks_run <= elapsed / 0.25 + 2, (checks_run, elapsed)  # one round per cache period at most

    own_redis.kill()
    killed = time.monotonic()
    while requests.get(node.url + "/readyz", timeout=5).status_code == 200:
        assert time.monotonic() - killed < 0.25 + 0.25 + 0.5, "a dead Redis was still reported ready"
        time.sleep(0.02)
