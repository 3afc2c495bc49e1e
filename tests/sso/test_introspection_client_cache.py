"""The mail server's introspection on the SSO fast path: its client row kept a second, the token read lean.

The fast path (sso/fast_token.py) keeps an asking client that is not the token's own for
CLIENT_KEEP_SECONDS and reads of a token only what introspection tells (sso/reads.py's INTROSPECTED_TOKENS).
These tests hold what that must not change: the same bytes as Django's path, one query per answer,
client authentication on every request, a revoked token refused at once, the login name only for a
token whose scope allows it, and a changed client seen within CLIENT_KEEP_SECONDS. Real database,
real Redis, mail tokens from the real code flow.
"""
from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from oauth2_provider.models import AccessToken, Application

from loginsvc.sso import fast_token, introspection as told
from loginsvc.sso.prepared import Kept
from loginsvc.sso.reads import APPLICATIONS, INTROSPECTED_TOKENS
from tests.conftest import PASSWORD, login
from tests.mailclients import oauth
from tests.mailclients.test_mail_tokens import tokens
from tests.sso.conftest import Product, register
from tests.sso.test_fast_token import Apps, apps, compare, introspection, keep_connection  # noqa: F401 - fixtures
from tests.sso.tokens import tokens_for
from tests.test_session_fast_path import call

NEW_SECRET = "a-rotated-mail-server-secret-" + "z" * 30


@pytest.fixture
def dovecot(db: None) -> Product:
    """The mail server's confidential client (LOGINSVC_MAIL_SERVER_CLIENT), beside the mail clients' product."""
    oauth.register()
    return register("dovecot")


@pytest.fixture
def mail(user: Any, dovecot: Product) -> dict[str, Any]:
    """A mail client's tokens (scope openid mail offline_access), through the code flow."""
    return tokens(user)


def asked(apps: Apps, dovecot: Product, token: str, result: str, secret: str | None = None) -> bytes:
    """Dovecot's introspection of `token`, answered alike by both paths, the fast path counting `result`."""
    answer = compare(apps, introspection(dovecot, {"token": token, "token_type_hint": "access_token"}, secret), result)
    return answer.body if answer.status == "200 OK" else answer.status.encode()


def kept_for_a_while() -> None:
    time.sleep(fast_token.CLIENT_KEEP_SECONDS + 0.05)


@pytest.mark.django_db
def test_the_mail_server_sees_a_mail_token_on_the_fast_path_as_on_djangos(apps, dovecot, mail, user) -> None:
    body = asked(apps, dovecot, mail["access_token"], "served")
    assert body.startswith(b'{"active": true, "client_id": "mail-client", "scope": "openid mail offline_access"')
    assert f'"username": "{user.email}"'.encode() in body and b'"amr": ["pwd"]' in body
    assert asked(apps, dovecot, mail["access_token"], "served") == body  # now with the kept client


@pytest.mark.django_db
def test_one_query_per_answer_once_the_client_is_kept(apps, dovecot, mail, product, signed_in) -> None:
    """The mail server's row is read once, not with every token; the lean read loads nothing afterwards."""
    fast_app, _ = apps
    own = tokens_for(signed_in, product)
    for who, token in ((dovecot, mail["access_token"]), (product, own["access_token"])):
        make = introspection(who, {"token": token})
        assert call(fast_app, make()).status == "200 OK"  # compiles the reads, keeps the client, reads the amr
        with CaptureQueriesContext(connection) as queries:
            assert b'"active": true' in call(fast_app, make()).body
        assert len(queries) == 1, [str(q["sql"])[:80] for q in queries]
        sql = queries[0]["sql"]   # None on PostgreSQL: a server-binding cursor (sso/prepared.py) logs no text
        assert sql is None or "oauth2_provider_accesstoken" in sql


@pytest.mark.django_db
def test_the_secret_is_checked_on_every_request_against_the_kept_row(apps, dovecot, mail) -> None:
    assert asked(apps, dovecot, mail["access_token"], "served").startswith(b'{"active": true')
    assert asked(apps, dovecot, mail["access_token"], "refused", secret="wrong-" + "x" * 40) == b"401 Unauthorized"
    assert asked(apps, dovecot, mail["access_token"], "refused", secret=dovecot.secret[:-1]) == b"401 Unauthorized"


@pytest.mark.django_db
def test_a_rotated_secret_stops_working_within_the_keep_time_and_the_new_one_works_at_once(apps, dovecot,
                                                                                          mail) -> None:
    fast_app, _ = apps
    assert asked(apps, dovecot, mail["access_token"], "served").startswith(b'{"active": true')
    application = Application.objects.get(client_id="dovecot")
    application.client_secret = NEW_SECRET
    application.save()
    rotated_at = time.monotonic()
    # The fast path's kept row refuses the new secret: Django answers, from the row it reads.
    assert asked(apps, dovecot, mail["access_token"], "refused", secret=NEW_SECRET).startswith(b'{"active": true')
    kept_for_a_while()
    assert asked(apps, dovecot, mail["access_token"], "refused") == b"401 Unauthorized"  # the old secret, both paths
    assert time.monotonic() - rotated_at < fast_token.CLIENT_KEEP_SECONDS + 1
    assert asked(apps, dovecot, mail["access_token"], "served", secret=NEW_SECRET).startswith(b'{"active": true')
    assert fast_app.asking_clients.first("dovecot").client_secret == application.client_secret


@pytest.mark.django_db
def test_a_deleted_or_public_client_is_refused_within_the_keep_time(apps, dovecot, mail) -> None:
    assert asked(apps, dovecot, mail["access_token"], "served").startswith(b'{"active": true')
    Application.objects.filter(client_id="dovecot").update(client_type=Application.CLIENT_PUBLIC)
    kept_for_a_while()
    assert asked(apps, dovecot, mail["access_token"], "refused") == b"401 Unauthorized"
    Application.objects.filter(client_id="dovecot").delete()
    kept_for_a_while()
    assert asked(apps, dovecot, mail["access_token"], "client") == b"401 Unauthorized"


@pytest.mark.django_db
def test_a_revoked_or_expired_mail_token_is_refused_at_once(apps, dovecot, user) -> None:
    """The client is kept; the token never is."""
    browser = Client()
    assert login(browser, user.email, PASSWORD).status_code == 302
    revoked, expired = tokens(user, browser=browser), tokens(user, browser=browser)
    for got in (revoked, expired):
        assert asked(apps, dovecot, got["access_token"], "served").startswith(b'{"active": true')
    assert Client().post("/oidc/revoke/", {"token": revoked["access_token"], "client_id": "mail-client"}).status_code == 200
    AccessToken.objects.filter(token_checksum=told.checksum(expired["access_token"])).update(expires="2001-01-01T00:00Z")
    for got in (revoked, expired):
        assert asked(apps, dovecot, got["access_token"], "served") == b'{"active": false}'


@pytest.mark.django_db
def test_the_login_name_only_for_a_token_whose_scope_allows_it(apps, dovecot, user, product, signed_in) -> None:
    assert b'"username"' in asked(apps, dovecot, tokens(user)["access_token"], "served")
    assert asked(apps, dovecot, tokens(user, scope="openid offline_access")["access_token"], "served") == \
        b'{"active": false}'
    product_token = tokens_for(signed_in, product)["access_token"]  # another product's token, scope without mail
    assert asked(apps, dovecot, product_token, "served") == b'{"active": false}'
    assert b'"username"' not in compare(apps, introspection(product, {"token": tokens_for(
        signed_in, product, scope="openid")["access_token"]}), "served").body


@pytest.mark.django_db
def test_the_lean_read_tells_what_the_whole_row_tells(dovecot, mail, product, signed_in) -> None:
    client = APPLICATIONS.first("dovecot")
    own = tokens_for(signed_in, product)["access_token"]
    for value, asking in ((mail["access_token"], client), (own, APPLICATIONS.first(product.client_id))):
        digest = told.checksum(value)
        lean = INTROSPECTED_TOKENS.first(digest)
        whole = AccessToken.objects.select_related("application", "user", "refresh_token").get(token_checksum=digest)
        assert lean.application.get_deferred_fields() == set()  # the asking client may authenticate against it
        expected = told.body(asking, whole)  # reads the sign-in's amr once: the process keeps it
        with CaptureQueriesContext(connection) as queries:
            assert told.body(asking, lean) == expected
        assert len(queries) == 0, [str(q["sql"])[:80] for q in queries]


@pytest.mark.django_db
def test_kept_rows_expire_are_bounded_and_a_missing_row_is_not_kept(dovecot, product) -> None:
    now = [100.0]
    kept = Kept(APPLICATIONS.first, 1.0, size=2, clock=lambda: now[0])
    first = kept.first("dovecot")
    assert first is not None and kept.first("dovecot") is first
    Application.objects.filter(client_id="dovecot").update(name="Renamed")
    now[0] += 0.99
    assert kept.first("dovecot").name == "Dovecot"
    now[0] += 0.02
    assert kept.first("dovecot").name == "Renamed"
    assert kept.first("nobody") is None
    register("nobody")
    assert kept.first("nobody") is not None  # a missing row was not kept
    kept.first(product.client_id)
    assert len(kept.rows) <= 2
