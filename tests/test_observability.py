"""X-Served-By, request ids, structured logs and Sentry events, none of them carrying secrets."""
from __future__ import annotations

import gzip
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Iterator

import pytest
import sentry_sdk
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import include, path

from loginsvc.observability import sentry
from loginsvc.observability.logs import JsonFormatter
from tests.conftest import PASSWORD, login


@pytest.mark.django_db
def test_every_response_says_who_served_it_and_which_release(client: Client, settings) -> None:
    release = settings.LOGINSVC["RELEASE"]
    for url in ("/login/", "/api/session", "/healthz", "/no-such-page"):
        response = client.get(url)
        assert response["X-Served-By"] == "test/pytest"
        assert response["X-Release"] == release
    metrics = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert f'loginsvc_build_info{{cluster="test",node="pytest",release="{release}"}} 1.0' in metrics


@pytest.mark.django_db
def test_request_id_is_kept_when_well_formed_and_replaced_otherwise(client: Client) -> None:
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123-def")["X-Request-ID"] == "abc-123-def"
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\r\nx")["X-Request-ID"]
    assert len(replaced) == 32 and replaced.isalnum()


@pytest.mark.django_db
def test_logs_are_json_with_request_id_and_hold_no_secrets(client: Client, user, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    login(client, user.email, "Wrong-Password-Typed")
    login(client, user.email, PASSWORD)
    client.get("/api/session?token=query-secret-123")
    session_id = client.cookies["loginsvc_sid"].value
    csrf = client.cookies["csrftoken"].value
    formatter = JsonFormatter(cluster="blue", node="blue-1")
    lines = [formatter.format(record) for record in caplog.records]
    entries = [json.loads(line) for line in lines]
    assert any(e["logger"] == "loginsvc.access" and e["request_id"] != "-" for e in entries)
    assert any(e["msg"] == "login: success" for e in entries)
    text = "\n".join(lines)
    for secret in (PASSWORD, "Wrong-Password-Typed", session_id, csrf, "query-secret-123"):
        assert secret not in text


def test_log_fields_named_like_secrets_are_redacted() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.password = "hunter2-hunter2"
    record.session_key = "abcdef123"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["password"] == "[redacted]" and entry["session_key"] == "[redacted]"


class _Receiver(BaseHTTPRequestHandler):
    """A local stand-in for Sentry's ingestion endpoint (a third-party SaaS): it records envelopes."""

    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "br":  # sentry-sdk compresses with Brotli when the module is installed (Locust brings it)
            import brotli

            body = brotli.decompress(body)
        _Receiver.received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sentry_receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://publickey@127.0.0.1:{server.server_port}/1"
    sentry_sdk.init(dsn=None)
    server.shutdown()


def _boom(request: HttpRequest) -> HttpResponse:
    request.POST.get("password")
    raise RuntimeError("failure while handling a login")


urlpatterns = [path("boom/", _boom), path("", include("loginsvc.urls"))]


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="tests.test_observability")
def test_sentry_events_carry_tags_but_no_password_cookie_or_token(client: Client, user, sentry_receiver) -> None:
    sentry.init(sentry_receiver, cluster="green", node="green-2", release="2026.11.1", environment="test")
    login(client, user.email, PASSWORD)
    session_id = client.cookies["loginsvc_sid"].value
    csrf = client.cookies["csrftoken"].value
    client.raise_request_exception = False
    response = client.post(
        "/boom/?token=query-secret-456", {"username": user.email, "password": "Pa55word-In-Body"},
        HTTP_X_CSRFTOKEN=csrf, HTTP_AUTHORIZATION="Bearer header-secret-789",
    )
    assert response.status_code == 500
    sentry_sdk.flush(timeout=5)
    payload = b"".join(_Receiver.received).decode("utf-8", "replace")
    assert "failure while handling a login" in payload  # the event did arrive
    assert '"cluster":"green"' in payload and '"node":"green-2"' in payload and "2026.11.1" in payload
    for secret in ("Pa55word-In-Body", PASSWORD, session_id, csrf, "query-secret-456", "header-secret-789"):
        assert secret not in payload, payload[max(0, payload.find(secret) - 300):payload.find(secret) + 50]
