"""Brute force: soft exponential lockout per account+IP, slowing per IP, shared state, DB fallback."""
from __future__ import annotations

import pytest
from django.test import Client, RequestFactory, override_settings

from loginsvc.accounts import throttle
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.models import ThrottleState
from tests import plugin
from tests.conftest import PASSWORD, csrf_from, login


def fail_times(n: int, email: str, ip: str = "127.0.0.1") -> list[int]:
    statuses = []
    for _ in range(n):
        c = Client(enforce_csrf_checks=True, REMOTE_ADDR=ip)
        token = csrf_from(c)
        statuses.append(c.post("/login/", {"username": email, "password": "wrong password",
                                           "csrfmiddlewaretoken": token}).status_code)
    return statuses


@pytest.mark.django_db
def test_ten_failures_lock_the_pair_and_a_correct_password_is_refused(user) -> None:
    assert fail_times(10, user.email) == [401] * 10
    client = Client(enforce_csrf_checks=True)
    response = login(client, user.email, PASSWORD)
    assert response.status_code == 429
    assert 55 <= int(response["Retry-After"]) <= 60
    assert b"Too many failed attempts" in response.content
    assert client.get("/api/session").json()["authenticated"] is False


@pytest.mark.django_db
def test_lock_is_per_account_and_ip_not_the_whole_account(user) -> None:
    fail_times(10, user.email, ip="10.0.0.1")
    other_ip = Client(enforce_csrf_checks=True, REMOTE_ADDR="10.0.0.2")
    assert login(other_ip, user.email, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_cool_off_doubles_with_each_further_failure() -> None:
    rule = throttle.Rule(threshold=10, base_seconds=60, max_seconds=900, window_seconds=100, sliding=True)
    assert [rule.lock_seconds(n) for n in (9, 10, 11, 12, 13, 14, 15, 40)] == [0, 60, 120, 240, 480, 900, 900, 900]


@pytest.mark.django_db
def test_success_before_the_threshold_resets_the_count(user) -> None:
    fail_times(9, user.email)
    assert login(Client(enforce_csrf_checks=True), user.email, PASSWORD).status_code == 302
    assert fail_times(9, user.email) == [401] * 9
    assert login(Client(enforce_csrf_checks=True), user.email, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_api_gets_json_429_with_retry_after(user) -> None:
    fail_times(10, user.email)
    client = Client(enforce_csrf_checks=True)
    response = client.post("/api/login", {"username": user.email, "password": PASSWORD},
                           content_type="application/json", HTTP_X_CSRFTOKEN=csrf_from(client))
    assert response.status_code == 429 and response.json()["error"] == "locked"
    assert response.json()["retry_after"] == int(response["Retry-After"]) > 0


@pytest.mark.django_db
def test_an_ip_spraying_many_accounts_is_slowed(settings, user) -> None:
    with override_settings(LOGINSVC={**settings.LOGINSVC, "IP_FAILURE_THRESHOLD": 5}):
        statuses = [fail_times(1, f"victim{i}@example.test", ip="203.0.113.9")[0] for i in range(6)]
        assert statuses == [401] * 5 + [429]
        sprayer = Client(enforce_csrf_checks=True, REMOTE_ADDR="203.0.113.9")
        assert login(sprayer, user.email, PASSWORD).status_code == 429
        assert login(Client(enforce_csrf_checks=True), user.email, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_database_takes_over_when_redis_is_down(settings, user, own_redis) -> None:
    own_redis.kill()
    caches = {"default": {**settings.CACHES["default"], "LOCATION": own_redis.url}}
    with override_settings(CACHES=caches):
        assert fail_times(10, user.email) == [401] * 10
        assert ThrottleState.objects.filter(locked_until__isnull=False).count() == 1
        assert login(Client(enforce_csrf_checks=True), user.email, PASSWORD).status_code == 429


@pytest.mark.django_db
def test_state_lives_in_redis_when_it_is_up(user) -> None:
    fail_times(3, user.email)
    assert not ThrottleState.objects.exists()
    assert any(k.startswith(b"loginsvc:bf:n:") for k in plugin.REDIS.client().keys("*"))


@pytest.mark.parametrize(
    ("hops", "xff", "remote", "expected"),
    [
        (0, "1.1.1.1", "127.0.0.1", "127.0.0.1"),
        (1, "6.6.6.6, 1.1.1.1", "127.0.0.1", "1.1.1.1"),
        (2, "6.6.6.6, 1.1.1.1, 10.0.0.5", "127.0.0.1", "1.1.1.1"),
        (3, "1.1.1.1, 10.0.0.5", "127.0.0.1", "1.1.1.1"),
        (1, "not-an-ip", "127.0.0.1", "127.0.0.1"),
        (1, "", "127.0.0.1", "127.0.0.1"),
        (1, "2001:db8::1", "::1", "2001:db8::1"),
    ],
)
def test_client_ip_trusts_only_configured_hops(hops: int, xff: str, remote: str, expected: str) -> None:
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR=xff, REMOTE_ADDR=remote)
    assert client_ip(request, trusted_hops=hops) == expected


@pytest.mark.django_db
def test_forged_forwarded_for_does_not_dodge_the_lock_without_trusted_hops(user) -> None:
    for i in range(10):
        c = Client(enforce_csrf_checks=True, HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
        c.post("/login/", {"username": user.email, "password": "bad", "csrfmiddlewaretoken": csrf_from(c)})
    c = Client(enforce_csrf_checks=True, HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert login(c, user.email, PASSWORD).status_code == 429


@pytest.mark.django_db
def test_ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4(user) -> None:
    for i in range(10):
        fail_times(1, user.email, ip=f"2001:db8:1:2::{i + 1:x}")
    assert login(Client(enforce_csrf_checks=True, REMOTE_ADDR="2001:db8:1:2::ffff"), user.email, PASSWORD).status_code == 429
    assert login(Client(enforce_csrf_checks=True, REMOTE_ADDR="2001:db8:1:3::1"), user.email, PASSWORD).status_code == 302
    assert throttle.client_network("::ffff:192.0.2.7") == "192.0.2.7"


@pytest.mark.django_db
def test_locks_set_on_the_database_hold_after_redis_is_back(settings, user, own_redis) -> None:
    own_redis.kill()
    with override_settings(CACHES={"default": {**settings.CACHES["default"], "LOCATION": own_redis.url}}):
        fail_times(10, user.email)
    # Redis (the suite's) answers again and knows nothing of these failures: the database lock holds.
    assert login(Client(enforce_csrf_checks=True), user.email, PASSWORD).status_code == 429


@pytest.mark.django_db
def test_purge_deletes_only_rows_whose_window_and_lock_are_over() -> None:
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    ThrottleState.objects.create(key="old", failures=3, expires_at=now - timedelta(seconds=1))
    ThrottleState.objects.create(key="locked", failures=12, expires_at=now - timedelta(seconds=1),
                                 locked_until=now + timedelta(seconds=30))
    ThrottleState.objects.create(key="current", failures=1, expires_at=now + timedelta(seconds=30))
    assert throttle.DatabaseStore().purge(now) == 1
    assert set(ThrottleState.objects.values_list("key", flat=True)) == {"locked", "current"}


@pytest.mark.django_db(transaction=True)
def test_database_fallback_counts_parallel_guesses_under_row_locks(settings, own_redis) -> None:
    """With Redis down, parallel guesses queue on the rows: the lock is checked only after the rows
    are locked (select_for_update), so no more than the threshold get their password checked."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, connections

    from loginsvc.accounts.models import User

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL; CI runs it there): SQLite's IMMEDIATE transactions "
                    "serialise every writer, so parallel attempts cannot race on it")
    User.objects.create_user("race@example.test", PASSWORD)
    own_redis.kill()
    parallel, threshold = 16, 3
    barrier = threading.Barrier(parallel)

    def guess(i: int) -> int:
        try:
            client = Client()
            barrier.wait(timeout=10)
            return client.post("/api/login", {"username": "race@example.test", "password": f"guess {i}"},
                               content_type="application/json", REMOTE_ADDR="203.0.113.5").status_code
        finally:
            connections.close_all()

    caches = {"default": {**settings.CACHES["default"], "LOCATION": own_redis.url}}
    with override_settings(CACHES=caches, LOGINSVC={**settings.LOGINSVC, "LOCKOUT_THRESHOLD": threshold}):
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            statuses = list(pool.map(guess, range(parallel)))
    assert statuses.count(401) <= threshold and statuses.count(429) >= parallel - threshold, statuses
    assert ThrottleState.objects.filter(locked_until__isnull=False).exists()


@pytest.mark.django_db
def test_a_right_password_with_a_second_factor_due_stays_counted_on_the_pair_only(settings, own_redis) -> None:
    """throttle.gave_password, on both stores: the pair keeps the attempt (code guesses stay bounded
    however often the password is typed), the address and the account get it back."""
    attempt = throttle.begin("ann@example.test", "192.0.2.1")
    throttle.gave_password(attempt)
    redis = plugin.REDIS.client()
    counts = {c.scope: int(redis.get(throttle.PREFIX + "n:" + c.key) or 0) for c in attempt.counters}
    assert counts == {"account_ip": 1, "ip": 0, "account": 0}
    own_redis.kill()
    with override_settings(CACHES={"default": {**settings.CACHES["default"], "LOCATION": own_redis.url}}):
        attempt = throttle.begin("bob@example.test", "192.0.2.2")
        assert attempt.store == "database"
        throttle.gave_password(attempt)
    rows = dict(ThrottleState.objects.values_list("key", "failures"))
    assert {c.scope: rows[c.key] for c in attempt.counters} == {"account_ip": 1, "ip": 0, "account": 0}


@pytest.mark.django_db
def test_a_code_step_leaves_the_outage_locks_to_its_password_step(user) -> None:
    """A lock kept on the database from a Redis outage holds every password attempt once Redis is back;
    a sign-in's code step, whose password step read it at most MFA_PENDING_SECONDS before, does not
    read it again (its guesses are counted in Redis)."""
    from django.utils import timezone
    from datetime import timedelta

    counters, _ = throttle.counters_for(user.email, "127.0.0.1", known=False)
    ThrottleState.objects.create(key=counters[0].key, failures=10, expires_at=timezone.now() + timedelta(hours=1),
                                 locked_until=timezone.now() + timedelta(minutes=5))
    held = throttle.begin(user.email, "127.0.0.1")
    assert not held.allowed and held.refused_by == "account_ip" and held.store == "redis"
    code_step = throttle.begin(user.email, "127.0.0.1", outage_locks=False)
    assert code_step.allowed and code_step.store == "redis"
