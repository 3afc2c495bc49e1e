"""Account-wide brute force (ASVS 2.2.1): guesses from many networks are cut to the limit, while the
real user, from a device or network the account knows, still signs in and is told what happened."""
from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterator

import pytest
import sentry_sdk
from django.contrib.auth.signals import user_login_failed
from django.test import Client, override_settings

from loginsvc.accounts import audit, known_sources
from loginsvc.accounts.models import KnownNetwork
from loginsvc.observability import sentry
from loginsvc.observability.metrics import LOCKOUTS
from tests.conftest import PASSWORD, csrf_from, login
from tests.test_observability import _Receiver, sentry_receiver  # noqa: F401 - a local Sentry receiver

HOME_IP = "192.0.2.10"  # where the real user signed in before the attack


class Attacker:
    """One client (no device cookie) that sends each guess from an address of its choosing."""

    def __init__(self) -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.token = csrf_from(self.client)

    def guess(self, email: str, password: str, ip: str, api: bool = False):
        if api:
            return self.client.post("/api/login", {"username": email, "password": password},
                                    content_type="application/json", HTTP_X_CSRFTOKEN=self.token, REMOTE_ADDR=ip)
        return self.client.post("/login/", {"username": email, "password": password,
                                            "csrfmiddlewaretoken": self.token}, REMOTE_ADDR=ip)


def network(i: int, host: int = 1) -> str:
    """Host `host` of the i-th /64 of one /48; each /64 also sits in a /56 of its own."""
    return str(ipaddress.ip_address(f"2001:db8:1:{i:02x}00::{host:x}"))


@pytest.fixture
def checked() -> Iterator[list[str]]:
    """Every password check that failed (Django's user_login_failed), i.e. every guess tried."""
    calls: list[str] = []

    def count(sender: object, credentials: dict, **kwargs: object) -> None:
        calls.append(credentials.get("username", ""))

    user_login_failed.connect(count)
    yield calls
    user_login_failed.disconnect(count)


@pytest.fixture
def known_user(user):
    """The account, signed in once from HOME_IP (so that network is known)."""
    assert login(Client(enforce_csrf_checks=True, REMOTE_ADDR=HOME_IP), user.email, PASSWORD).status_code == 302
    return user


def attack(email: str, guesses: int = 1000, networks: int = 100) -> list[int]:
    attacker = Attacker()
    per_network = guesses // networks
    return [attacker.guess(email, f"guess {i}-{j}", network(i, j + 1), api=True).status_code  # JSON: quicker
            for i in range(networks) for j in range(per_network)]


@pytest.mark.django_db
def test_1000_guesses_from_100_ipv6_64s_are_cut_to_the_asvs_figure(known_user, checked) -> None:
    started = time.monotonic()
    statuses = attack(known_user.email)
    assert len(statuses) == 1000 and set(statuses) <= {401, 429}
    # At most 100 passwords checked in this hour; the growing delays already stop it near 20.
    assert len(checked) == statuses.count(401) <= 100, len(checked)
    # The real user, from the network they signed in from before (a new browser: no device cookie).
    home = Client(enforce_csrf_checks=True, REMOTE_ADDR=HOME_IP)
    response = login(home, known_user.email, PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/"
    page = home.get("/").content.decode()
    assert "1000 failed attempts since your last sign-in" in page
    assert "failed attempts" not in home.get("/").content.decode()  # told once
    assert time.monotonic() - started < 30


@pytest.mark.django_db
def test_past_the_limit_only_known_devices_and_networks_sign_in(settings, known_user, checked) -> None:
    device = Client(enforce_csrf_checks=True, REMOTE_ADDR=HOME_IP)
    assert login(device, known_user.email, PASSWORD).status_code == 302  # sets the device cookie
    no_delays = {**settings.LOGINSVC, "ACCOUNT_DELAY_THRESHOLD": 10_000}
    with override_settings(LOGINSVC=no_delays):
        statuses = attack(known_user.email, guesses=300, networks=100)
        # Exactly the limit, then the step-up; its budget still checks ACCOUNT_STEP_UP_CHECKS (10)
        # passwords, for an account with a second factor, and answers them as the refusals.
        assert statuses.count(401) == 100 and len(checked) == 110
        assert statuses[100:] == [429] * 200
        attacker = Attacker()
        # The correct password alone, from a new network, is not enough now ...
        refused = attacker.guess(known_user.email, PASSWORD, network(200), api=True)
        assert refused.status_code == 429 and refused.json()["reason"] == "account"
        assert 3590 <= int(refused["Retry-After"]) <= 3600
        page = attacker.guess(known_user.email, PASSWORD, network(201))
        assert page.status_code == 429 and b"device or network you have used before" in page.content
        # ... while the known device signs in from anywhere, and the known network with any browser.
        device.cookies.pop("loginsvc_sid")
        welcome = device.post("/api/login", {"username": known_user.email, "password": PASSWORD},
                              content_type="application/json", HTTP_X_CSRFTOKEN=csrf_from(device),
                              REMOTE_ADDR=network(202))
        assert welcome.status_code == 200
        assert welcome.json() == {"authenticated": True, "email": known_user.email,
                                  "failed_attempts_since_last_login": 302}
        assert login(Client(enforce_csrf_checks=True, REMOTE_ADDR=HOME_IP), known_user.email, PASSWORD).status_code == 302
        # The owner's sign-ins do not lift the step-up for everyone else.
        assert attacker.guess(known_user.email, PASSWORD, network(203)).status_code == 429
    assert len(checked) == 110


@pytest.mark.django_db
def test_delays_grow_and_answer_429_at_once(settings, user, checked) -> None:
    attacker = Attacker()
    with override_settings(LOGINSVC={**settings.LOGINSVC, "ACCOUNT_DELAY_THRESHOLD": 3}):
        assert [attacker.guess(user.email, "bad", network(i)).status_code for i in range(3)] == [401] * 3
        started = time.monotonic()
        first = attacker.guess(user.email, "bad", network(3))
        assert first.status_code == 429 and first["Retry-After"] == "1"
        assert time.monotonic() - started < 0.5  # refused at once: no thread waits out the delay
        time.sleep(1.05)
        assert attacker.guess(user.email, "bad", network(4)).status_code == 401
        assert attacker.guess(user.email, "bad", network(5))["Retry-After"] == "2"
    assert len(checked) == 4


@pytest.mark.django_db
def test_the_step_up_ends_after_its_cool_off(settings, user) -> None:
    attacker = Attacker()
    quick = {**settings.LOGINSVC, "ACCOUNT_DELAY_THRESHOLD": 100, "ACCOUNT_FAILURE_LIMIT": 3, "ACCOUNT_WINDOW_SECONDS": 1}
    with override_settings(LOGINSVC=quick):
        assert [attacker.guess(user.email, "bad", network(i)).status_code for i in range(4)] == [401] * 3 + [429]
        held = attacker.guess(user.email, PASSWORD, network(9))  # the right password: a mailed code first
        assert held.status_code == 302 and held["Location"].startswith("/login/mfa/")
        time.sleep(1.1)
        welcome = attacker.guess(user.email, PASSWORD, network(9))
        assert welcome.status_code == 302 and not welcome["Location"].startswith("/login/mfa/")


@pytest.mark.django_db
def test_ipv6_is_also_counted_per_56(settings, user) -> None:
    attacker = Attacker()
    with override_settings(LOGINSVC={**settings.LOGINSVC, "IPV6_WIDE_FAILURE_THRESHOLD": 5}):
        same_56 = [f"2001:db8:7:{i:x}::1" for i in range(7)]  # seven /64s of 2001:db8:7::/56
        statuses = [attacker.guess(f"victim{i}@example.test", "bad", ip).status_code for i, ip in enumerate(same_56)]
        assert statuses == [401] * 5 + [429] * 2
        assert attacker.guess(user.email, PASSWORD, "2001:db8:7:ff::1").status_code == 429  # still in the /56
        assert attacker.guess(user.email, PASSWORD, "2001:db8:7:100::1").status_code == 302  # the next /56


@pytest.mark.django_db
def test_passing_the_limit_alerts_with_a_keyed_account_hash(settings, user, caplog, sentry_receiver) -> None:
    sentry.init(sentry_receiver, cluster="blue", node="blue-1", release="test", environment="test")
    caplog.set_level(logging.INFO)
    before = LOCKOUTS.labels("account")._value.get()
    with override_settings(LOGINSVC={**settings.LOGINSVC, "ACCOUNT_DELAY_THRESHOLD": 100, "ACCOUNT_FAILURE_LIMIT": 3}):
        attack(user.email, guesses=6, networks=6)
    assert LOCKOUTS.labels("account")._value.get() == before + 1  # once, not per refused guess
    alerts = [r for r in caplog.records if r.getMessage().startswith("login: account passed the failure limit")]
    assert len(alerts) == 1 and alerts[0].levelno == logging.WARNING
    assert alerts[0].account == audit.account_tag(user.email) and alerts[0].client_ip == network(2, 1)
    sentry_sdk.flush(timeout=5)
    payload = b"".join(_Receiver.received).decode("utf-8", "replace")
    assert "an account passed its failure limit" in payload and audit.account_tag(user.email) in payload
    assert user.email not in payload


@pytest.mark.django_db
def test_known_networks_are_per_address_or_64_and_capped(user) -> None:
    for i in range(known_sources.MAX_KNOWN_NETWORKS + 5):
        known_sources.remember_network(user, f"198.51.100.{i}")
    known_sources.remember_network(user, "2001:db8:5:6::1")
    known_sources.remember_network(user, "2001:db8:5:6::2")
    networks = set(KnownNetwork.objects.filter(user=user).values_list("network", flat=True))
    assert len(networks) == known_sources.MAX_KNOWN_NETWORKS and "2001:db8:5:6::/64" in networks
    assert known_sources.network_knows(user.email, "2001:db8:5:6::ffff")
    assert not known_sources.network_knows(user.email, "198.51.100.0")  # the oldest, dropped
    assert not known_sources.network_knows(user.email, "198.51.101.24")


@pytest.mark.django_db
def test_a_forged_or_foreign_device_cookie_is_not_known(user) -> None:
    other = Client(enforce_csrf_checks=True)
    assert login(other, user.email, PASSWORD).status_code == 302
    request = type("R", (), {"COOKIES": {known_sources.device_cookie_name(): other.cookies[known_sources.device_cookie_name()].value}})
    assert known_sources.device_knows(request, user.email)
    assert not known_sources.device_knows(request, "someone.else@example.test")
    request.COOKIES = {known_sources.device_cookie_name(): other.cookies[known_sources.device_cookie_name()].value[:-2] + "xx"}
    assert not known_sources.device_knows(request, user.email)


@pytest.mark.django_db
def test_with_redis_down_the_database_keeps_the_account_counter(settings, known_user, own_redis, checked) -> None:
    own_redis.kill()
    caches = {"default": {**settings.CACHES["default"], "LOCATION": own_redis.url}}
    small = {**settings.LOGINSVC, "ACCOUNT_DELAY_THRESHOLD": 100, "ACCOUNT_FAILURE_LIMIT": 3}
    with override_settings(CACHES=caches, LOGINSVC=small):
        assert attack(known_user.email, guesses=5, networks=5) == [401] * 3 + [429] * 2
        held = Attacker().guess(known_user.email, PASSWORD, network(7))  # a mailed code first
        assert held.status_code == 302 and held["Location"].startswith("/login/mfa/")
        home = Client(enforce_csrf_checks=True, REMOTE_ADDR=HOME_IP)
        assert login(home, known_user.email, PASSWORD).status_code == 302
        assert "6 failed attempts since your last sign-in" in home.get("/").content.decode()
    assert len(checked) == 5  # the limit, then the step-up's budget (10) for the two refused guesses
