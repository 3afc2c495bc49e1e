"""Userinfo and introspection fast path (sso/fast_token.py): byte-for-byte Django's answer, or Django answers.

Each case sends the same request to the fast-path application and to Django's own WSGI handler
and compares status, body and every header in order (only a generated X-Request-ID may differ),
and checks which path answered through loginsvc_sso_fast_path_total. Neither endpoint writes
anything on success, so both calls start from the same state. Real database, real Redis, tokens
minted by the real code flow; no mocks.
"""
from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from io import BytesIO
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, RefreshToken
from prometheus_client import REGISTRY

from loginsvc import conf
from loginsvc.accounts import fast_session
from loginsvc.sso import fast_token, reads
from tests.conftest import csrf_from
from tests.sso.conftest import Product, register
from tests.sso.tokens import tokens_for
from tests.test_session_fast_path import Answer, call, environ_for


COUNTER = "loginsvc_sso_fast_path_total"
Apps = tuple[Callable[..., Any], Callable[..., Any]]


@pytest.fixture(autouse=True)
def keep_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path closes obsolete connections before it reads, as request_started does for Django
    (which call() disconnects): inside a test's transaction the connection is never in autocommit, so
    that check would close it (on PostgreSQL; SQLite's in-memory test database survives a close)."""
    monkeypatch.setattr(fast_token, "close_old_connections", lambda: None)


@pytest.fixture
def apps() -> Apps:
    fast = fast_token.wrap(WSGIHandler())
    assert isinstance(fast, fast_token.FastTokenApp), f"the fast path is off under the test settings: {fast_token.unsupported()}"
    return fast, WSGIHandler()


@pytest.fixture
def mine(signed_in: Client, product: Product) -> dict[str, Any]:
    """A token response for the signed-in user and the confidential first-party product."""
    return tokens_for(signed_in, product)


def userinfo(access: str | None, **extra: Any) -> Callable[[], dict[str, Any]]:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {access}"} if access is not None else {}
    return lambda: environ_for(path="/oidc/userinfo/", **{**headers, **extra})


def introspection(product: Product | None, form: dict[str, str], secret: str | None = None,
                  **extra: Any) -> Callable[[], dict[str, Any]]:
    body = urlencode(form).encode()

    def make() -> dict[str, Any]:
        headers: dict[str, Any] = {"CONTENT_TYPE": "application/x-www-form-urlencoded",
                                   "CONTENT_LENGTH": str(len(body)), "wsgi.input": BytesIO(body)}
        if product is not None:
            raw = f"{product.client_id}:{product.secret if secret is None else secret}".encode()
            headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(raw).decode()
        return environ_for(method="POST", path="/oidc/introspect/", **{**headers, **extra})
    return make


def counts() -> dict[tuple[str, str], float]:
    return {(endpoint, result): REGISTRY.get_sample_value(COUNTER, {"endpoint": endpoint, "result": result}) or 0.0
            for endpoint in ("userinfo", "introspect") for result in fast_token.RESULTS}


def compare(apps: Apps, make: Callable[[], dict[str, Any]], result: str | None,
            request_id: str | None = None) -> Answer:
    """Both paths answer `make()` alike; `result` is what the fast path counted (None: never entered).
    Tried again when the clock's second changed in between (userinfo's Expires is the current second)."""
    fast_app, django_app = apps
    for _attempt in range(3):
        second = int(time.time())
        before = counts()
        fast = call(fast_app, make())
        counted = {key: n - before[key] for key, n in counts().items() if n != before[key]}
        django = call(django_app, make())
        if fast.comparable(request_id) == django.comparable(request_id) or int(time.time()) == second:
            break
    assert fast.comparable(request_id) == django.comparable(request_id)
    assert list(counted.values()) in ([], [1.0]) and {r for _, r in counted} == ({result} if result else set())
    return fast


# --- userinfo ------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_userinfo_is_served_fast_and_identical(apps, mine, user) -> None:
    answer = compare(apps, userinfo(mine["access_token"]), "served")
    assert answer.status == "200 OK"
    assert answer.body == (f'{{"sub": "{user.pk}", "email": "{user.email}", "email_verified": true, '
                           f'"name": "{user.display_name or user.email}", "amr": ["pwd"], "acr": "1"}}').encode()
    assert {name for name, _ in answer.headers} >= {
        "Content-Type", "Content-Length", "Vary", "X-Frame-Options", "X-Content-Type-Options",
        "Referrer-Policy", "Cross-Origin-Opener-Policy", "X-Served-By", "X-Request-ID"}
    compare(apps, userinfo(mine["access_token"], HTTP_X_REQUEST_ID="trace-0123456789"), "served", "trace-0123456789")
    compare(apps, userinfo(mine["access_token"], HTTP_AUTHORIZATION="bearer  " + mine["access_token"]), "served")


@pytest.mark.django_db
def test_userinfo_releases_only_the_granted_scopes(apps, signed_in, product) -> None:
    only_openid = tokens_for(signed_in, product, scope="openid")
    answer = compare(apps, userinfo(only_openid["access_token"]), "served")
    assert answer.body.startswith(b'{"sub": ') and b"email" not in answer.body


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["", "not-a-token", "x" * 600, "Basic abc"])
def test_unknown_or_malformed_bearer_goes_to_django(apps, value) -> None:
    answer = compare(apps, userinfo(None, HTTP_AUTHORIZATION=f"Bearer {value}".strip()), "refused")
    assert answer.status.startswith("401") or answer.status.startswith("403")


@pytest.mark.django_db
def test_expired_and_scope_less_tokens_go_to_django(apps, mine, signed_in, product) -> None:
    AccessToken.objects.filter(token_checksum=fast_token.checksum(mine["access_token"])).update(
        expires=timezone.now() - timedelta(seconds=1))
    assert compare(apps, userinfo(mine["access_token"]), "refused").status.startswith("401")
    no_openid = tokens_for(signed_in, product)
    AccessToken.objects.filter(token_checksum=fast_token.checksum(no_openid["access_token"])).update(scope="email")
    assert compare(apps, userinfo(no_openid["access_token"]), "refused").status[0] == "4"


@pytest.mark.django_db
def test_revocation_rotation_and_logout_are_refused_on_the_next_request(apps, mine, signed_in, product) -> None:
    """Nothing is cached: each of these ends a token in the database, and the very next request sees it."""
    compare(apps, userinfo(mine["access_token"]), "served")
    Client().post("/oidc/revoke/", {"token": mine["access_token"]}, **product.basic())
    assert compare(apps, userinfo(mine["access_token"]), "refused").status.startswith("401")

    rotated = tokens_for(signed_in, product)
    compare(apps, userinfo(rotated["access_token"]), "served")
    Client().post("/oidc/token/", {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]},
                  **product.basic())
    assert compare(apps, userinfo(rotated["access_token"]), "refused").status.startswith("401")

    last = tokens_for(signed_in, product)
    compare(apps, userinfo(last["access_token"]), "served")
    assert signed_in.post("/logout/", {"csrfmiddlewaretoken": csrf_from(signed_in)}).status_code == 302
    assert compare(apps, userinfo(last["access_token"]), "refused").status.startswith("401")


@pytest.mark.django_db
def test_other_userinfo_shapes_go_to_django(apps, mine) -> None:
    access = mine["access_token"]
    compare(apps, userinfo(None), "request")  # no Authorization header
    compare(apps, userinfo(access, QUERY_STRING="x=1"), "request")
    compare(apps, userinfo(access, HTTP_COOKIE="csrftoken=" + "a" * 32), "request")
    compare(apps, userinfo(access, HTTP_HOST="evil.example"), "request")
    body = b"access_token=" + access.encode()
    compare(apps, userinfo(access, CONTENT_LENGTH=str(len(body)), **{"wsgi.input": BytesIO(body)}), "request")
    compare(apps, userinfo(access, REQUEST_METHOD="POST"), None)  # only GET enters
    compare(apps, userinfo(access, REQUEST_METHOD="HEAD"), None)


# --- introspection -------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_introspection_is_served_fast_and_identical(apps, mine, product, user) -> None:
    answer = compare(apps, introspection(product, {"token": mine["access_token"]}), "served")
    assert answer.body.startswith(b'{"active": true, "client_id": "webmail", "scope": "openid email profile"')
    assert ("Cache-Control", "no-store") in answer.headers and ("Pragma", "no-cache") in answer.headers
    compare(apps, introspection(product, {"token": mine["access_token"], "token_type_hint": "access_token"}), "served")
    refresh = compare(apps, introspection(product, {"token": mine["refresh_token"],
                                                    "token_type_hint": "refresh_token"}), "served")
    assert b'"token_type": "refresh_token"' in refresh.body
    compare(apps, introspection(product, {"token": mine["refresh_token"]}), "served")


@pytest.mark.django_db
def test_client_secret_in_the_body_is_served_too(apps, mine, product) -> None:
    form = {"token": mine["access_token"], "client_id": product.client_id, "client_secret": product.secret}
    assert compare(apps, introspection(None, form), "served").body.startswith(b'{"active": true')


@pytest.mark.django_db
def test_inactive_answers_are_served_fast(apps, mine, signed_in, product) -> None:
    """An unknown, revoked, rotated or foreign token: {"active": false} for the authenticated client."""
    inactive = b'{"active": false}'
    assert compare(apps, introspection(product, {"token": "no-such-token"}), "served").body == inactive
    other = register("admin-portal")
    theirs = tokens_for(signed_in, other)
    assert compare(apps, introspection(product, {"token": theirs["access_token"]}), "served").body == inactive
    assert compare(apps, introspection(other, {"token": theirs["access_token"]}), "served").body != inactive
    Client().post("/oidc/revoke/", {"token": mine["access_token"]}, **product.basic())
    assert compare(apps, introspection(product, {"token": mine["access_token"]}), "served").body == inactive


@pytest.mark.django_db
def test_refused_clients_and_bad_requests_go_to_django(apps, mine, product) -> None:
    token = {"token": mine["access_token"]}
    assert compare(apps, introspection(product, token, secret="wrong-" + "x" * 40), "refused").status.startswith("401")
    assert compare(apps, introspection(None, token), "refused").status.startswith("401")
    public = register("quarantine", confidential=False)
    assert compare(apps, introspection(public, token, secret=""), "refused").status.startswith("401")
    ghost = Product("ghost", product.secret, product.redirect_uri, None)
    assert compare(apps, introspection(ghost, token), "client").status.startswith("401")
    assert compare(apps, introspection(product, {}), "refused").status.startswith("400")
    assert compare(apps, introspection(product, {"token": "x" * 513}), "refused").status == "200 OK"  # not ours
    compare(apps, introspection(product, token, CONTENT_TYPE="text/plain"), "request")
    latin = "application/x-www-form-urlencoded; charset=latin-1"
    assert compare(apps, introspection(product, token, CONTENT_TYPE=latin), "request").status.startswith("400")
    utf8 = "application/x-www-form-urlencoded; charset=UTF-8"
    assert compare(apps, introspection(product, token, CONTENT_TYPE=utf8), "served").status == "200 OK"
    compare(apps, introspection(product, token, QUERY_STRING="token=x"), "request")
    compare(apps, introspection(product, token, REQUEST_METHOD="GET"), None)


@pytest.mark.django_db
def test_nul_in_a_parameter_is_refused_by_django(apps, mine, product) -> None:
    for form in ({"token": mine["access_token"] + "\x00"}, {"token": mine["access_token"], "token_type_hint": "\x00"},
                 {"token": mine["access_token"], "client_id": "x\x00"}):
        answer = compare(apps, introspection(product, form), "request")
        assert answer.status.startswith("400") and b"NUL" in answer.body


@pytest.mark.django_db
def test_userinfo_is_never_stored_by_a_cache(apps, mine) -> None:
    headers = dict(compare(apps, userinfo(mine["access_token"]), "served").headers)
    assert "no-store" in headers["Cache-Control"] and "private" in headers["Cache-Control"]


@pytest.mark.django_db
def test_rotated_client_secret_is_refused_at_once(apps, mine, product) -> None:
    compare(apps, introspection(product, {"token": mine["access_token"]}), "served")
    application = Application.objects.get(client_id=product.client_id)
    application.client_secret = "a-brand-new-secret-" + "y" * 30
    application.save()
    assert compare(apps, introspection(product, {"token": mine["access_token"]}), "refused").status.startswith("401")


@pytest.mark.django_db
def test_production_headers_and_https_redirect_match(mine, product) -> None:
    production = dict(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), SECURE_SSL_REDIRECT=True,
                      SECURE_HSTS_SECONDS=31536000, SECURE_HSTS_INCLUDE_SUBDOMAINS=True, SECURE_HSTS_PRELOAD=True)
    hsts = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains; preload")
    with override_settings(**production):
        apps = (fast_token.wrap(WSGIHandler()), WSGIHandler())
        for make in (lambda **h: userinfo(mine["access_token"], **h),
                     lambda **h: introspection(product, {"token": mine["access_token"]}, **h)):
            assert hsts in compare(apps, make(HTTP_X_FORWARDED_PROTO="https"), "served").headers
            assert compare(apps, make(), "request").status.startswith("301")


# --- what it costs and what it reads -------------------------------------------------------------------

@pytest.mark.django_db
def test_one_query_each_and_no_key_ring(apps, mine, product, monkeypatch) -> None:
    """The token with its client, user and refresh token; the sign-in's amr is the process's once read."""
    fast_app, _ = apps
    from loginsvc.sso import keys

    def no_keys() -> Any:
        raise AssertionError("userinfo and introspection must not load signing keys")

    monkeypatch.setattr(keys, "ring", no_keys)
    for make in (userinfo(mine["access_token"]), introspection(product, {"token": mine["access_token"]})):
        call(fast_app, make())  # compiles this thread's query
        with CaptureQueriesContext(connection) as queries:
            assert call(fast_app, make()).status == "200 OK"
        assert len(queries) == 1, [str(q["sql"])[:80] for q in queries]


@pytest.mark.django_db(transaction=True)  # committed: the second thread has a connection of its own
def test_prepared_reads_give_the_orms_objects(mine) -> None:
    digest = fast_token.checksum(mine["access_token"])
    orm = AccessToken.objects.select_related("application", "user", "refresh_token").filter(
        token_checksum=digest).first()
    found: list[Any] = []

    def other_thread() -> None:
        try:
            found.append(fast_token.ACCESS_TOKENS.first(digest))
        finally:
            connection.close()

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()  # another thread compiles its own query on its own connection
    assert len(found) == 1
    for fast in (fast_token.ACCESS_TOKENS.first(digest), *found):
        for obj, expected in ((fast, orm), (fast.user, orm.user), (fast.application, orm.application)):
            assert type(obj) is type(expected) and obj.__dict__.keys() == expected.__dict__.keys()
            assert {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields} == \
                   {f.attname: getattr(expected, f.attname) for f in expected._meta.concrete_fields}
        assert fast._state.adding is False and fast._state.db == orm._state.db
    assert fast_token.ACCESS_TOKENS.first("0" * 64) is None
    refresh = fast_token.REFRESH_TOKENS.first(fast_token.checksum(mine["refresh_token"]))
    assert refresh == RefreshToken.objects.get(token_checksum=fast_token.checksum(mine["refresh_token"]))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements live in a PostgreSQL server session")
@pytest.mark.django_db
def test_postgresql_plans_the_read_once_per_connection(mine) -> None:
    digest = fast_token.checksum(mine["access_token"])
    for _ in range(3):  # settings: prepared from the second run on (LOGINSVC_DB_PREPARE_THRESHOLD)
        assert fast_token.ACCESS_TOKENS.first(digest) is not None
    assert AccessToken.objects.filter(token_checksum=digest).exists()  # Django's own query: never prepared
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = {row[0] for row in cursor.fetchall()}
    ours = {prepared.local.compiled.sql.replace("%(value)s", "$1")
            for prepared in reads.ALL
            if getattr(prepared.local, "compiled", None) is not None}
    assert fast_token.ACCESS_TOKENS.local.compiled.sql.replace("%(value)s", "$1") in statements
    assert statements <= ours, statements - ours


@pytest.mark.django_db
def test_same_metrics_and_access_log_line(apps, mine, product, caplog) -> None:
    caplog.set_level(logging.INFO, logger="loginsvc.access")
    cases = ((userinfo(mine["access_token"]), "user-info", "GET /oidc/userinfo/ 200"),
             (introspection(product, {"token": mine["access_token"]}), "introspect", "POST /oidc/introspect/ 200"))
    for make, view, line in cases:
        labels = {"view": view, "method": line.split()[0], "status": "200"}
        lines = []
        for app in apps:
            count = REGISTRY.get_sample_value("loginsvc_request_duration_seconds_count", labels) or 0.0
            caplog.clear()
            answer = call(app, make())
            assert REGISTRY.get_sample_value("loginsvc_request_duration_seconds_count", labels) == count + 1
            [record] = [r for r in caplog.records if r.name == "loginsvc.access"]
            assert record.request_id == dict(answer.headers)["X-Request-ID"]
            lines.append((record.levelname, record.getMessage(), record.status, record.view))
            assert mine["access_token"] not in "\n".join(caplog.messages)
        assert lines[0] == lines[1] == ("INFO", line, 200, view)


def test_gunicorns_application_has_both_fast_paths() -> None:
    import loginsvc.wsgi

    assert isinstance(loginsvc.wsgi.application, fast_token.FastTokenApp)
    assert isinstance(loginsvc.wsgi.application.inner, fast_session.FastSessionApp)


@pytest.mark.django_db
def test_switch_and_unknown_middleware_turn_it_off(settings, caplog) -> None:
    django_app = WSGIHandler()
    with override_settings(LOGINSVC={**settings.LOGINSVC, "SSO_FAST_PATH": False}):
        assert fast_token.wrap(django_app) is django_app
    assert conf.load({"LOGINSVC_SSO_FAST_PATH": "0"})["SSO_FAST_PATH"] is False
    with pytest.raises(Exception, match="LOGINSVC_SSO_FAST_PATH: must be one of"):
        conf.load({"LOGINSVC_SSO_FAST_PATH": "maybe"})
    with override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]):
        assert fast_token.wrap(django_app) is django_app
    assert "SSO fast path off: MIDDLEWARE" in caplog.text


@pytest.mark.django_db
def test_a_disabled_user_is_refused_by_both_paths_on_the_next_request(apps, mine, product, user) -> None:
    """ASVS 3.3.3, on the fast path too: a user disabled behind the models' back (nothing revoked)."""
    compare(apps, userinfo(mine["access_token"]), "served")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_user SET is_active = %s WHERE id = %s", [False, user.pk])
    assert compare(apps, userinfo(mine["access_token"]), "refused").status.startswith("401")
    answer = compare(apps, introspection(product, {"token": mine["access_token"]}), "served")
    assert answer.body == b'{"active": false}'


@pytest.mark.django_db
def test_a_release_the_parity_tests_did_not_run_on_hands_everything_to_django(mine, monkeypatch, caplog) -> None:
    """The fast path overrides private toolkit and oauthlib functions: another release, no fast path."""
    installed = {"django-oauth-toolkit": "3.5.0", "oauthlib": "4.0.1"}
    assert "3.5.0" in fast_token.unproven_versions(installed.__getitem__)
    assert fast_token.unproven_versions({"django-oauth-toolkit": "3.4.9", "oauthlib": "4.0.0"}.__getitem__) is None
    monkeypatch.setattr(fast_token, "unproven_versions", lambda: "django-oauth-toolkit 3.5.0 is not proven")
    with caplog.at_level(logging.WARNING, logger="loginsvc.sso.fast_token"):
        app = fast_token.wrap(WSGIHandler())
    assert not isinstance(app, fast_token.FastTokenApp)
    assert "SSO fast path off: django-oauth-toolkit 3.5.0 is not proven" in caplog.text
    before = counts()
    assert call(app, userinfo(mine["access_token"])()).status.startswith("200")
    assert counts()[("userinfo", "versions")] - before[("userinfo", "versions")] == 1
