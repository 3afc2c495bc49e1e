"""GET /api/session fast path (accounts/fast_session.py): byte-for-byte Django's answer, or Django answers.

Each case asks the same request of the fast-path application and of Django's own WSGI handler,
from the same state (Redis, the session table and the per-process user cache are restored
between the two calls), and compares status, body and every header in order; only the values
of a generated X-Request-ID and of a freshly minted CSRF cookie may differ. It also checks which
path answered, through loginsvc_session_fast_path_total. Real Redis and database, no mocks.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from io import BytesIO
from typing import Any

import pytest
import requests
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.backends.cached_db import SessionStore
from django.contrib.sessions.models import Session
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone
from prometheus_client import REGISTRY

from loginsvc.accounts import backends, fast_session, sessions
from loginsvc.accounts.models import User
from tests import plugin
from tests.conftest import PASSWORD, create_user_in, login
from tests.support import Browser

COUNTER = "loginsvc_session_fast_path_total"


@dataclass
class Answer:
    status: str
    headers: list[tuple[str, str]]
    body: bytes

    def comparable(self, request_id: str | None) -> tuple[str, list[tuple[str, str]], bytes]:
        headers = []
        for name, value in self.headers:
            if name == "X-Request-ID" and request_id is None:
                assert re.fullmatch(r"[0-9a-f]{32}", value)
                value = "<generated>"
            if name == "Set-Cookie":
                value = re.sub(r"csrftoken=\w+;", "csrftoken=<minted>;", value)
            headers.append((name, value))
        return self.status, headers, self.body


def call(app: Callable[..., Any], environ: dict[str, Any]) -> Answer:
    """One request through a WSGI app, as gunicorn would; DB connections kept (test transaction)."""
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        captured.update(status=status, headers=list(headers))

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()  # fires request_finished for Django's answers
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return Answer(captured["status"], captured["headers"], body)


def environ_for(cookies: dict[str, str] | None = None, method: str = "GET", query: str = "",
                path: str = "/api/session", **headers: str) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver", "REMOTE_ADDR": "127.0.0.1", "wsgi.input": BytesIO(b""),
        "wsgi.url_scheme": "http", "wsgi.errors": BytesIO(), "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0),
    }
    if cookies:
        environ["HTTP_COOKIE"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    environ.update(headers)
    return environ


def results() -> dict[str, float]:
    return {r: REGISTRY.get_sample_value(COUNTER, {"result": r}) or 0.0 for r in fast_session.RESULTS}


class State:
    """Everything a request may change: Redis, the session table, this process's user cache."""

    def __init__(self) -> None:
        redis = plugin.REDIS.client()
        self.redis = [(key, redis.pttl(key), redis.dump(key)) for key in redis.keys("*")]
        self.sessions = list(Session.objects.all())
        self.users = dict(backends._users)

    def restore(self) -> None:
        redis = plugin.REDIS.client()
        redis.flushall()
        for key, ttl, value in self.redis:
            redis.restore(key, max(ttl, 0), value, replace=True)
        Session.objects.all().delete()
        Session.objects.bulk_create(self.sessions)
        backends._users.clear()
        backends._users.update(self.users)


@pytest.fixture
def apps() -> tuple[Callable[..., Any], Callable[..., Any]]:
    fast = fast_session.wrap(WSGIHandler())
    assert isinstance(fast, fast_session.FastSessionApp), "the fast path is off under the test settings"
    return fast, WSGIHandler()


def compare(apps: tuple[Callable[..., Any], Callable[..., Any]], make: Callable[[], dict[str, Any]],
            result: str | None, request_id: str | None = None) -> Answer:
    """Both paths answer `make()` alike from the same state; `result` is what the fast path counted
    (None: the request never entered it). Retried if the clock's second changed in between (a
    cookie's expiry differs then), each try from the state before the first: after a first try,
    Redis and the database hold what Django wrote (a touched session looks fresh)."""
    fast_app, django_app = apps
    state = State()
    for attempt in range(3):
        if attempt:
            state.restore()
        second = int(time.time())
        before = results()
        fast = call(fast_app, make())
        counted = {r: n - before[r] for r, n in results().items() if n != before[r]}
        state.restore()
        django = call(django_app, make())
        if fast.comparable(request_id) == django.comparable(request_id) or int(time.time()) == second:
            break
    assert fast.comparable(request_id) == django.comparable(request_id)
    assert counted == ({} if result is None else {result: 1.0})
    return fast


@pytest.fixture
def signed_in(client: Client, user: User) -> dict[str, str]:
    """A browser's cookies after a form login, with this process's user cache warm."""
    login(client, user.email, PASSWORD)
    cookies = {"loginsvc_sid": client.cookies["loginsvc_sid"].value, "csrftoken": client.cookies["csrftoken"].value}
    call(WSGIHandler(), environ_for(cookies))  # Django caches the user, as the first request would
    return cookies


def age(cookies: dict[str, str], **shift: int) -> None:
    store = SessionStore(cookies["loginsvc_sid"])
    for key, seconds in shift.items():
        store[key] = store[key] - seconds
    store.save()


@pytest.mark.django_db
def test_signed_in_get_and_head_are_served_fast_and_identical(apps, signed_in, user) -> None:
    answer = compare(apps, lambda: environ_for(signed_in), "served")
    assert answer.status == "200 OK" and b'"authenticated": true' in answer.body
    assert {name for name, _ in answer.headers} >= {
        "Content-Type", "Content-Length", "Cache-Control", "Expires", "Vary", "X-Frame-Options",
        "X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy", "X-Served-By", "X-Request-ID"}
    compare(apps, lambda: environ_for(signed_in, method="HEAD"), "served")
    compare(apps, lambda: environ_for(signed_in, HTTP_X_REQUEST_ID="trace-0123456789"), "served", "trace-0123456789")
    compare(apps, lambda: environ_for(signed_in, HTTP_X_REQUEST_ID="bad id\r\nx"), "served")


@pytest.mark.django_db
def test_signed_out_browser_with_csrf_cookie_is_served_fast(apps, client: Client) -> None:
    client.get("/api/session")
    token = client.cookies["csrftoken"].value
    answer = compare(apps, lambda: environ_for({"csrftoken": token}), "served")
    assert answer.body == b'{"authenticated": false}'
    masked = get_token(RequestFactory().get("/"))  # 64 characters: how Django < 4.0 stored the cookie
    assert len(masked) == 64
    compare(apps, lambda: environ_for({"csrftoken": masked}), "served")


@pytest.mark.django_db
def test_csrf_cookie_missing_or_malformed_goes_to_django(apps, signed_in) -> None:
    answer = compare(apps, lambda: environ_for(), "csrf")
    assert any(name == "Set-Cookie" and "csrftoken=" in value for name, value in answer.headers)
    compare(apps, lambda: environ_for({**signed_in, "csrftoken": "short"}), "csrf")
    compare(apps, lambda: environ_for({"loginsvc_sid": signed_in["loginsvc_sid"]}), "csrf")


@pytest.mark.django_db
@pytest.mark.parametrize("sid", ["", "x", "garbage!!garbage", "a" * 32, "%ff%00;;=="])
def test_bad_or_unknown_session_cookie_goes_to_django(apps, signed_in, sid: str) -> None:
    answer = compare(apps, lambda: environ_for({**signed_in, "loginsvc_sid": sid}), "session")
    assert answer.body == b'{"authenticated": false}'
    assert any(name == "Set-Cookie" and value.startswith(' loginsvc_sid=""') for name, value in answer.headers)


@pytest.mark.django_db
def test_idle_expired_and_logged_out_sessions_go_to_django(apps, signed_in) -> None:
    key = signed_in["loginsvc_sid"]
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    plugin.REDIS.client().delete(*[k for k in plugin.REDIS.client().keys("*") if key.encode() in k])
    answer = compare(apps, lambda: environ_for(signed_in), "session")
    assert answer.body == b'{"authenticated": false}'
    assert any(name == "Set-Cookie" and value.startswith(' loginsvc_sid=""') for name, value in answer.headers)


@pytest.mark.django_db
def test_absolute_lifetime_over_logs_out_through_django(apps, signed_in) -> None:
    age(signed_in, **{sessions.AUTH_TIME: 36000, sessions.TOUCHED: 10})
    answer = compare(apps, lambda: environ_for(signed_in), "lifetime")
    assert answer.body == b'{"authenticated": false}'


@pytest.mark.django_db
def test_session_due_a_touch_is_written_by_django(apps, signed_in) -> None:
    age(signed_in, **{sessions.AUTH_TIME: 600, sessions.TOUCHED: 600})
    answer = compare(apps, lambda: environ_for(signed_in), "lifetime")
    assert b'"authenticated": true' in answer.body
    assert any(name == "Set-Cookie" and "loginsvc_sid=" in value for name, value in answer.headers)


@pytest.mark.django_db
def test_a_retried_comparison_starts_again_from_the_first_state(apps, signed_in) -> None:
    """compare() itself: when the second changes between the two calls, the retry must not see the
    session Django touched on the first try (it would look fresh to both paths and pass as served)."""
    fast_app, django_app = apps
    slept: list[float] = []

    def fast_then_next_second(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        answer = fast_app(environ, start_response)  # Django's Set-Cookie, expiry included, is out
        if not slept:
            slept.append(1.02 - time.time() % 1)
            time.sleep(slept[0])  # Django's own answer comes in the next second: expiries differ
        return answer

    age(signed_in, **{sessions.AUTH_TIME: 600, sessions.TOUCHED: 600})
    compare((fast_then_next_second, django_app), lambda: environ_for(signed_in), "lifetime")
    assert slept


@pytest.mark.django_db
def test_user_not_cached_yet_goes_to_django_once(apps, signed_in) -> None:
    backends._users.clear()
    compare(apps, lambda: environ_for(signed_in), "user")
    compare(apps, lambda: environ_for(signed_in), "served")  # the answer above cached the user


@pytest.mark.django_db
def test_password_changed_elsewhere_ends_the_session_like_django(apps, signed_in, user) -> None:
    # Another node changed the password; this one has since re-read the user (cache expired).
    User.objects.filter(pk=user.pk).update(password=make_password("a brand new password 1"))
    backends._users.clear()
    backends.CachedModelBackend().get_user(user.pk)
    answer = compare(apps, lambda: environ_for(signed_in), "auth_hash")
    assert answer.body == b'{"authenticated": false}'
    assert any(name == "Set-Cookie" and value.startswith(' loginsvc_sid=""') for name, value in answer.headers)


@pytest.mark.django_db
def test_password_changed_here_and_inactive_user_go_to_django(apps, signed_in, user) -> None:
    user.set_password("a brand new password 2")
    user.save()  # drops the cached user
    assert compare(apps, lambda: environ_for(signed_in), "user").body == b'{"authenticated": false}'


@pytest.mark.django_db
def test_inactive_user_is_answered_by_django(apps, signed_in, user) -> None:
    user.is_active = False
    user.save()
    assert compare(apps, lambda: environ_for(signed_in), "user").body == b'{"authenticated": false}'


@pytest.mark.django_db
def test_session_of_another_backend_goes_to_django(apps, signed_in) -> None:
    store = SessionStore(signed_in["loginsvc_sid"])
    store["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    store.save()
    compare(apps, lambda: environ_for(signed_in), "user")


@pytest.mark.django_db
def test_other_requests_never_enter_the_fast_path(apps, signed_in) -> None:
    compare(apps, lambda: environ_for(signed_in, query="x=1"), None)
    compare(apps, lambda: environ_for(signed_in, path="/api/session/"), None)
    post = compare(apps, lambda: environ_for(signed_in, method="POST", HTTP_X_CSRFTOKEN=signed_in["csrftoken"]), None)
    assert post.status == "405 Method Not Allowed"


@pytest.mark.django_db
def test_refused_host_goes_to_django(apps, signed_in) -> None:
    answer = compare(apps, lambda: environ_for(signed_in, HTTP_HOST="evil.example"), "request")
    assert answer.status.startswith("400")


@pytest.mark.django_db
def test_production_headers_and_https_redirect_match(signed_in) -> None:
    production = dict(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), SECURE_SSL_REDIRECT=True,
                      SECURE_HSTS_SECONDS=31536000, SECURE_HSTS_INCLUDE_SUBDOMAINS=True, SECURE_HSTS_PRELOAD=True,
                      SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True)
    with override_settings(**production):
        apps = (fast_session.wrap(WSGIHandler()), WSGIHandler())
        answer = compare(apps, lambda: environ_for(signed_in, HTTP_X_FORWARDED_PROTO="https"), "served")
        assert ("Strict-Transport-Security", "max-age=31536000; includeSubDomains; preload") in answer.headers
        assert compare(apps, lambda: environ_for(signed_in), "request").status.startswith("301")


@pytest.mark.django_db
def test_redis_down_goes_to_django_and_backs_off(signed_in, user, settings, own_redis) -> None:
    caches = {"default": {**settings.CACHES["default"], "LOCATION": own_redis.url}}
    with override_settings(CACHES=caches):
        client = Client(enforce_csrf_checks=True)
        login(client, user.email, PASSWORD)
        cookies = {"loginsvc_sid": client.cookies["loginsvc_sid"].value, "csrftoken": client.cookies["csrftoken"].value}
        apps = (fast_session.wrap(WSGIHandler()), WSGIHandler())
        compare(apps, lambda: environ_for(cookies), "user")  # Django caches the user
        compare(apps, lambda: environ_for(cookies), "served")
        own_redis.kill()
        answer = compare(apps, lambda: environ_for(cookies), "redis_error")
        assert b'"authenticated": true' in answer.body  # from the database, as before
        compare(apps, lambda: environ_for(cookies), "redis_down")  # no second wait on a dead Redis


@pytest.mark.django_db
def test_same_metrics_and_access_log_line(apps, signed_in, caplog) -> None:
    labels = {"view": "api-session", "method": "GET", "status": "200"}
    caplog.set_level(logging.INFO, logger="loginsvc.access")
    lines = []
    for app in apps:
        count = REGISTRY.get_sample_value("loginsvc_request_duration_seconds_count", labels) or 0.0
        caplog.clear()
        answer = call(app, environ_for(signed_in))
        assert REGISTRY.get_sample_value("loginsvc_request_duration_seconds_count", labels) == count + 1
        [record] = [r for r in caplog.records if r.name == "loginsvc.access"]
        assert record.request_id == dict(answer.headers)["X-Request-ID"]
        lines.append((record.levelname, record.getMessage(), record.status, record.view))
        assert signed_in["loginsvc_sid"] not in "\n".join(caplog.messages)
    assert lines[0] == lines[1] == ("INFO", "GET /api/session 200", 200, "api-session")


def test_gunicorns_application_has_the_fast_path() -> None:
    import loginsvc.wsgi  # django.setup() again: its logging set-up drops this test's caplog handler

    from loginsvc.sso import fast_token

    app = loginsvc.wsgi.application  # userinfo/introspection fast path, /api/session's, Django (SQLite and PostgreSQL)
    assert isinstance(app, fast_token.FastTokenApp), fast_token.unsupported()
    app = app.inner
    assert isinstance(app, fast_session.FastSessionApp)
    assert isinstance(app.django_app, WSGIHandler)


@pytest.mark.django_db
def test_switch_and_unknown_middleware_turn_the_fast_path_off(settings, caplog) -> None:
    django_app = WSGIHandler()
    with override_settings(LOGINSVC={**settings.LOGINSVC, "SESSION_FAST_PATH": False}):
        assert fast_session.wrap(django_app) is django_app
    with override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]):
        assert fast_session.wrap(django_app) is django_app
    assert "session fast path off: MIDDLEWARE" in caplog.text


def test_gunicorn_node_serves_fast_and_matches_a_node_without_it(stack) -> None:
    """The real thing: gunicorn, preload, multiprocess metrics. Same answer as a node without it."""
    fast, slow = stack("fast"), stack("slow", LOGINSVC_SESSION_FAST_PATH="0")
    create_user_in(fast, "node.user@example.test", PASSWORD)
    browser = Browser(fast.url)
    assert browser.login("node.user@example.test", PASSWORD).status_code == 200
    for method in ("GET", "HEAD"):
        answers = []
        for node in (fast, slow, fast):  # the fast node's first answer is Django's: user not cached yet
            response = browser.call(method, "/api/session", node.url, headers={"X-Request-ID": "node-compare-1"})
            headers = [(k, v) for k, v in response.raw.headers.items() if k not in {"Date", "X-Served-By"}]
            answers.append((response.status_code, headers, response.content))
        assert answers[0] == answers[1] == answers[2]
        assert (b'"authenticated": true' in answers[0][2]) is (method == "GET")  # HEAD: no body
    metrics = requests.get(fast.url + "/metrics", timeout=10).text
    served = re.search(r'^loginsvc_session_fast_path_total\{result="served"\} (\S+)$', metrics, re.M)
    assert served and float(served.group(1)) >= 1
    assert "loginsvc_session_fast_path_total" not in requests.get(slow.url + "/metrics", timeout=10).text


@pytest.mark.django_db
def test_a_user_changed_on_another_node_is_not_served_from_the_cache(apps, signed_in, user) -> None:
    """From its second request on, a session's read also fetches its user's auth-epoch counters
    (one round trip): a change published by another process sends the request to Django."""
    from loginsvc.accounts import auth_epoch

    compare(apps, lambda: environ_for(signed_in), "served")
    compare(apps, lambda: environ_for(signed_in), "served")  # the pipelined read
    plugin.REDIS.client().incr(auth_epoch.KEY_PREFIX + str(user.pk))
    compare(apps, lambda: environ_for(signed_in), "user")
    compare(apps, lambda: environ_for(signed_in), "served")  # Django re-read and cached the user
    plugin.REDIS.client().incr(auth_epoch.ALL_KEY)
    compare(apps, lambda: environ_for(signed_in), "user")
