"""OpenID Connect Back-Channel Logout 1.0 §2.4 (the logout token) and §2.5 (delivering it), in process.

The outbox rows are delivered by backchannel.deliver_due() in the test's thread to a real HTTP
receiver on a free port (test_oidc_backchannel_logout_receiver.Receiver), which checks every token
against /oidc/jwks/. Time is moved by passing `now`, so back-off is tested without waiting.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from jwcrypto import jwk, jws

from loginsvc.sso import backchannel
from loginsvc.sso.models import LogoutDelivery
from tests.plugin import free_port
from tests.sso.conftest import ISSUER, register
from tests.sso.test_oidc_backchannel_logout_receiver import EVENT, Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(db: None) -> Iterator[Receiver]:
    server = Receiver(Client().get("/oidc/jwks/").json()).start()
    yield server
    server.stop()


def queue(uri: str, client_id: str = "webmail", sid: str = "sid-1", sub: str = "42", **fields: Any) -> LogoutDelivery:
    from oauth2_provider.models import Application

    application = Application.objects.filter(client_id=client_id).first() or register(client_id, backchannel=uri).application
    return LogoutDelivery.objects.create(application=application, uri=uri, sub=sub, sid=sid, **fields)


def fresh(row: LogoutDelivery) -> LogoutDelivery:
    return LogoutDelivery.objects.get(pk=row.pk)


# --- §2.4 the logout token ------------------------------------------------------------------------
def test_s2_4_logout_token_is_rs256_with_typ_kid_and_exactly_the_claims(receiver: Receiver) -> None:
    from loginsvc.sso import keys

    row = queue(receiver.uri("webmail"))
    token = backchannel.logout_token(row, "webmail")
    verified = jws.JWS()
    verified.deserialize(token)
    key = keys.ring().signing_key()
    verified.verify(jwk.JWK(**key.public), alg="RS256")
    header = verified.jose_header
    claims = json.loads(verified.payload)
    assert header == {"alg": "RS256", "typ": "logout+jwt", "kid": key.kid}
    assert set(claims) == {"iss", "aud", "iat", "exp", "jti", "events", "sub", "sid"}     # no nonce
    assert (claims["iss"], claims["aud"], claims["sub"], claims["sid"]) == (ISSUER, "webmail", "42", "sid-1")
    assert claims["jti"] == str(row.jti) and claims["events"] == {EVENT: {}}
    assert claims["exp"] - claims["iat"] == 120


def test_s2_4_each_attempt_signs_a_fresh_token_with_the_same_jti(receiver: Receiver) -> None:
    row = queue(receiver.uri("webmail"))
    later = timezone.now() + timedelta(hours=3)
    first, second = (json.loads(_payload(backchannel.logout_token(row, "webmail", when)))
                     for when in (timezone.now(), later))
    assert second["iat"] - first["iat"] >= 3 * 3600 - 1 and first["jti"] == second["jti"]


def _payload(token: str) -> bytes:
    unverified = jws.JWS()
    unverified.deserialize(token)
    return unverified.objects["payload"]


def test_s2_4_without_a_sid_the_token_names_the_subject_only(receiver: Receiver) -> None:
    claims = json.loads(_payload(backchannel.logout_token(queue(receiver.uri("webmail"), sid=""), "webmail")))
    assert "sid" not in claims and claims["sub"] == "42"


# --- §2.5 delivery --------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 204])
def test_s2_5_a_200_or_204_is_delivered_once(receiver: Receiver, status: int) -> None:
    receiver.status = status
    row = queue(receiver.uri("webmail"))
    assert backchannel.deliver_due() == 1
    done = fresh(row)
    assert done.delivered is not None and done.attempts == 1 and done.claimed_until is None
    assert receiver.jtis() == Counter({str(row.jti): 1}) and receiver.rejected == []
    assert backchannel.deliver_due() == 0 and receiver.hits == 1      # delivered rows are not sent again


@pytest.mark.parametrize("status", [400, 404, 500, 503, 302])
def test_s2_5_any_other_status_is_retried_with_back_off(receiver: Receiver, status: int, caplog: Any) -> None:
    receiver.status = status
    row = queue(receiver.uri("webmail"))
    caplog.set_level(logging.INFO, logger="loginsvc.sso.backchannel")
    now = timezone.now()
    assert backchannel.deliver_due(now) == 0
    failed = fresh(row)
    assert failed.delivered is None and failed.attempts == 1 and failed.last_error == f"HTTP {status}"
    assert timedelta(seconds=0.8) <= failed.next_attempt - now <= timedelta(seconds=1)
    assert backchannel.deliver_due(now + timedelta(seconds=0.5)) == 0 and receiver.hits == 1   # not due yet
    token_parts = [r for r in caplog.records if "eyJ" in r.getMessage() or "eyJ" in json.dumps(vars(r), default=str)]
    assert token_parts == []                                                                 # never the token
    receiver.status = 200
    assert backchannel.deliver_due(now + timedelta(seconds=2)) == 1
    assert fresh(row).attempts == 2 and receiver.jtis() == Counter({str(row.jti): 2})


def test_s2_5_a_redirect_is_not_followed() -> None:
    hits: list[str] = []

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        row = queue(f"http://127.0.0.1:{server.server_port}/webmail/backchannel-logout")
        assert backchannel.deliver_due() == 0
        assert hits == ["/webmail/backchannel-logout"] and fresh(row).last_error == "HTTP 307"
    finally:
        server.shutdown()
        server.server_close()


def test_s2_5_product_down_rows_back_off_then_are_delivered_once_it_is_up(db: None, settings: Any) -> None:
    """Nothing listens on the product's port: each pass tries one of its rows, which fails; the wait
    doubles up to the maximum; once the product listens, each logout is delivered exactly once."""
    settings.LOGINSVC = dict(settings.LOGINSVC, BACKCHANNEL_MAX_BACKOFF_SECONDS=4)
    down = Receiver(Client().get("/oidc/jwks/").json(), port=free_port())
    rows = [queue(down.uri("webmail"), sid=f"sid-{i}") for i in range(2)]
    now, tried = timezone.now(), {r.pk: 0 for r in rows}
    for _ in range(8):
        assert backchannel.deliver_due(now) == 0
        states = [fresh(r) for r in rows]
        [attempted] = [s for s in states if s.attempts != tried[s.pk]]          # one try per pass
        assert attempted.attempts == tried[attempted.pk] + 1 and "ConnectionRefusedError" in attempted.last_error
        ceiling = min(4, 2 ** (attempted.attempts - 1))
        assert 0.8 * ceiling - 0.01 <= (attempted.next_attempt - now).total_seconds() <= ceiling + 0.01
        tried = {s.pk: s.attempts for s in states}
        now = max(now, min(s.next_attempt for s in states)) + timedelta(milliseconds=1)
    assert sorted(tried.values()) == [4, 4]
    down.start()
    try:
        assert backchannel.deliver_due(now + timedelta(seconds=5)) == 2
        assert down.jtis() == Counter({str(r.jti): 1 for r in rows})
        assert [fresh(r).attempts for r in rows] == [5, 5] and not backchannel.anything_due(now + timedelta(days=1))
    finally:
        down.stop()


def test_s2_5_back_off_doubles_from_a_second_up_to_the_maximum_with_jitter(settings: Any) -> None:
    settings.LOGINSVC = dict(settings.LOGINSVC, BACKCHANNEL_MAX_BACKOFF_SECONDS=300)
    assert [backchannel.backoff(n, rand=1) for n in range(1, 11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert backchannel.backoff(3, rand=0) == pytest.approx(3.2)
    assert all(0.8 <= backchannel.backoff(1) <= 1 for _ in range(50))


def test_s2_5_a_product_that_times_out_is_retried(db: None, settings: Any) -> None:
    settings.LOGINSVC = dict(settings.LOGINSVC, BACKCHANNEL_TIMEOUT_SECONDS=0.3)
    slow = Receiver(Client().get("/oidc/jwks/").json(), delay=1.0).start()
    try:
        row = queue(slow.uri("webmail"))
        assert backchannel.deliver_due() == 0
        assert "timed out" in fresh(row).last_error and fresh(row).attempts == 1
    finally:
        slow.stop()


def test_s2_5_one_product_down_does_not_hold_up_the_others(receiver: Receiver) -> None:
    dead = f"http://127.0.0.1:{free_port()}/admin-portal/backchannel-logout"
    stuck = [queue(dead, "admin-portal", sid=f"a-{i}") for i in range(3)]
    fine = [queue(receiver.uri("webmail"), sid=f"w-{i}") for i in range(3)]
    counts = backchannel.run()
    assert (counts.delivered, counts.retried, counts.deferred) == (3, 1, 2)   # one try of the dead product
    assert [fresh(r).attempts for r in stuck] == [1, 0, 0] and all(fresh(r).delivered for r in fine)


def test_s2_5_rows_older_than_the_give_up_time_are_dropped_with_a_warning(receiver: Receiver, caplog: Any) -> None:
    old = queue(receiver.uri("webmail"), created=timezone.now() - timedelta(days=1, seconds=1), attempts=30,
                last_error="HTTP 503")
    young = queue(receiver.uri("webmail"), sid="sid-2")
    with caplog.at_level(logging.WARNING, logger="loginsvc.sso.backchannel"):
        counts = backchannel.run()
    assert (counts.delivered, counts.dropped) == (1, 1)
    assert not LogoutDelivery.objects.filter(pk=old.pk).exists() and fresh(young).delivered
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (warning.client_id, warning.attempts, warning.last_error) == ("webmail", 30, "HTTP 503")
    assert receiver.jtis() == Counter({str(young.jti): 1})


def test_claims_are_exclusive_and_a_lapsed_lease_frees_the_row(receiver: Receiver) -> None:
    """What keeps two processes apart: the first claim wins, the second gets nothing until the
    lease ends (a process that died mid-delivery); a delivered row can never be claimed again."""
    row = queue(receiver.uri("webmail"))
    now = timezone.now()
    lease = backchannel.claim(row.pk, now)
    assert lease is not None and backchannel.claim(row.pk, now) is None
    assert backchannel.deliver_due(now) == 0 and receiver.hits == 0
    assert not backchannel.anything_due(now)
    after = lease + timedelta(milliseconds=1)
    assert backchannel.anything_due(after) and backchannel.deliver_due(after) == 1
    assert backchannel.claim(row.pk, after + timedelta(hours=1)) is None


def test_delivered_rows_are_kept_a_day_then_deleted(receiver: Receiver) -> None:
    row = queue(receiver.uri("webmail"))
    assert backchannel.deliver_due() == 1
    assert backchannel.purge(timezone.now() + timedelta(hours=23)) == 0 and LogoutDelivery.objects.filter(pk=row.pk).exists()
    assert backchannel.purge(timezone.now() + timedelta(days=1, minutes=1)) == 1


def test_kick_starts_nothing_in_a_process_that_did_not_start_delivery(receiver: Receiver) -> None:
    queue(receiver.uri("webmail"))
    backchannel.kick()
    assert not [t for t in threading.enumerate() if t.name == "backchannel-logout"]
    assert receiver.hits == 0 and LogoutDelivery.objects.filter(delivered=None).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_worker_thread_delivers_when_kicked_and_stops_cleanly() -> None:
    server = Receiver(Client().get("/oidc/jwks/").json()).start()
    try:
        row = queue(server.uri("webmail"))
        backchannel.start()
        try:
            backchannel.kick()
            deadline = timezone.now() + timedelta(seconds=10)
            while not fresh(row).delivered and timezone.now() < deadline:
                threading.Event().wait(0.05)
        finally:
            assert backchannel.stop(timeout=10)
        assert fresh(row).delivered and server.jtis() == Counter({str(row.jti): 1})
        assert not [t for t in threading.enumerate() if t.name == "backchannel-logout"]
        backchannel.kick()                                           # stopped: a no-op again
        assert not [t for t in threading.enumerate() if t.name == "backchannel-logout"]
    finally:
        server.stop()


def test_deliver_logouts_command_once_json_and_status(receiver: Receiver, capsys: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}/admin-portal/backchannel-logout"
    queue(dead, "admin-portal")
    queue(receiver.uri("webmail"))
    call_command("deliver_logouts", "--once", "--json")
    assert json.loads(capsys.readouterr().out) == {"delivered": 1, "retried": 1, "dropped": 0, "deferred": 0}
    call_command("deliver_logouts", "--status", "--json")
    status = json.loads(capsys.readouterr().out)
    assert status == {"admin-portal": {"pending": 0, "failing": 1, "delivered_last_day": 0, "oldest_seconds": 0},
                      "webmail": {"pending": 0, "failing": 0, "delivered_last_day": 1, "oldest_seconds": 0}}
    call_command("deliver_logouts", "--status")
    text = capsys.readouterr().out
    assert "admin-portal" in text and "failing" in text
