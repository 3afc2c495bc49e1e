"""OpenID Connect Back-Channel Logout 1.0 §2.5 with real gunicorn nodes: delivered at once, retried, never lost.

Each node is the real thing (tests/conftest.py `stack`: gunicorn with deploy/gunicorn.conf.py, so
the delivery thread runs in its worker), products are Receivers on free ports that check each
logout token against the node's /oidc/jwks/, and the browser signs in with the code flow over HTTP.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from deploy.node import manage, wait_for
from tests.support import Browser, LoginNode
from tests.sso.test_oidc_backchannel_logout_receiver import Receiver, fetch_jwks

EMAIL, PASSWORD = "ann@example.test", "a node password for back-channel tests"
SECRET = "back-channel-node-tests-secret-" + "y" * 20
# Retries every second or two (the schedule itself is tested in process), short timeouts and leases.
ENV = {"LOGINSVC_BACKCHANNEL_MAX_BACKOFF_SECONDS": "2", "LOGINSVC_BACKCHANNEL_TIMEOUT_SECONDS": "1"}

PREPARE = """
from oauth2_provider.models import Application
from loginsvc.accounts.models import User
from loginsvc.sso.models import Product
if not User.objects.filter(email={email!r}).exists():
    User.objects.create_user({email!r}, {password!r})
for client_id, uri in {products!r}.items():
    app = Application.objects.create(
        client_id=client_id, name=client_id, client_secret={secret!r}, client_type="confidential",
        authorization_grant_type="authorization-code", redirect_uris=f"https://{{client_id}}.example.test/callback",
        post_logout_redirect_uris=f"https://{{client_id}}.example.test/", skip_authorization=True,
        algorithm="RS256", hash_client_secret=True)
    Product.objects.create(application=app, backchannel_logout_uri=uri)
"""


def prepare(env: dict[str, str], products: dict[str, str]) -> None:
    """The user and the products (client id → back-channel URI, "" for none), as an operator would."""
    code = PREPARE.format(email=EMAIL, password=PASSWORD, products=products, secret=SECRET)
    manage(env, "shell", "-v", "0", "-c", code)


OUTBOX_SQL = ("SELECT a.client_id, d.sid, d.attempts, d.delivered IS NOT NULL AS delivered, d.last_error "
              "FROM sso_logoutdelivery d JOIN oauth2_provider_application a ON a.id = d.application_id")


def outbox(env: dict[str, str]) -> list[dict[str, Any]]:
    """The outbox rows, read straight from the nodes' database (PostgreSQL when DATABASE_URL is set)."""
    if env.get("DATABASE_URL"):
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(env["DATABASE_URL"], row_factory=dict_row, connect_timeout=5) as db:
            return [dict(row) for row in db.execute(OUTBOX_SQL)]
    path = Path(env["LOGINSVC_VAR_DIR"]) / "db.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(OUTBOX_SQL)]


def claims_of(jwt_text: str) -> dict[str, Any]:
    payload = jwt_text.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Session:
    """One browser's central session on a node, and the tokens each product got through it."""

    def __init__(self, node: LoginNode) -> None:
        self.node, self.browser, self.tokens = node, Browser(node.url), {}
        assert self.browser.login(EMAIL, PASSWORD).status_code == 200

    def sign_in(self, client_id: str) -> dict[str, Any]:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        redirect_uri = f"https://{client_id}.example.test/callback"
        query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": "s",
                 "scope": "openid email", "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256"}
        response = self.browser.call("GET", "/oidc/authorize/?" + urlencode(query))
        assert response.status_code == 302, response.text[:300]
        code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
        response = requests.post(self.node.url + "/oidc/token/", auth=(client_id, SECRET), timeout=10, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier})
        assert response.status_code == 200, response.text
        self.tokens[client_id] = tokens = response.json()
        return tokens

    @property
    def sid(self) -> str:
        return claims_of(next(iter(self.tokens.values()))["id_token"])["sid"]

    @property
    def sub(self) -> str:
        return claims_of(next(iter(self.tokens.values()))["id_token"])["sub"]

    def logout(self, path: str) -> None:
        if path == "/logout/":
            response = self.browser.call("POST", "/logout/", headers={"X-CSRFToken": self.browser.csrf_token()})
        else:
            client_id = next(iter(self.tokens))
            response = self.browser.call("GET", "/oidc/logout/?" + urlencode({
                "id_token_hint": self.tokens[client_id]["id_token"], "client_id": client_id,
                "post_logout_redirect_uri": f"https://{client_id}.example.test/"}))
        assert response.status_code == 302, response.text[:300]

    def alive(self, client_id: str) -> tuple[bool, bool]:
        """(introspection says active, a refresh succeeds) for that product's tokens."""
        tokens, auth = self.tokens[client_id], (client_id, SECRET)
        active = requests.post(self.node.url + "/oidc/introspect/", data={"token": tokens["access_token"]},
                               auth=auth, timeout=10).json()["active"]
        refreshed = requests.post(self.node.url + "/oidc/token/", auth=auth, timeout=10, data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
        if refreshed.status_code == 200:
            tokens.update(refreshed.json())
        return active, refreshed.status_code == 200


@pytest.fixture
def products(stack: Callable[..., LoginNode]) -> Iterator[tuple[LoginNode, Receiver]]:
    """A node and a receiver (not yet listening) for webmail, admin-portal; quarantine has no URI."""
    node = stack("blue-1", **ENV)
    receiver = Receiver(fetch_jwks(node.url)())
    prepare(node.env, {"webmail": receiver.uri("webmail"), "admin-portal": receiver.uri("admin-portal"),
                       "quarantine": ""})
    yield node, receiver
    receiver.stop()


def signed_in(node: LoginNode) -> tuple[Session, Session]:
    """Session A in webmail, admin-portal and quarantine; session B (same user) in webmail."""
    a, b = Session(node), Session(node)
    for client_id in ("webmail", "admin-portal", "quarantine"):
        a.sign_in(client_id)
    b.sign_in("webmail")
    assert a.sid != b.sid
    return a, b


def no_token_logged(receiver: Receiver, *nodes: LoginNode) -> bool:
    logs = "".join(node.log() for node in nodes)
    return bool(receiver.raw) and not any(raw in logs or raw.split(".")[2] in logs for raw in receiver.raw)


@pytest.mark.parametrize("path", ["/logout/", "/oidc/logout/"])
def test_logout_on_a_node_is_delivered_to_every_product_of_that_session_only(products: Any, path: str) -> None:
    node, receiver = products
    receiver.start()
    a, b = signed_in(node)
    a.logout(path)
    wait_for(lambda: len(receiver.received) >= 2, 10, "two logout tokens")
    time.sleep(1.5)                                              # the worker's next passes add nothing
    assert receiver.deliveries() == {("webmail", a.sid, a.sub), ("admin-portal", a.sid, a.sub)}
    assert sum(receiver.jtis().values()) == 2 and receiver.rejected == []
    for client_id in ("webmail", "admin-portal", "quarantine"):
        assert a.alive(client_id) == (False, False), client_id
    assert b.alive("webmail") == (True, True)                   # the same user's other browser: untouched
    assert all(row["delivered"] for row in outbox(node.env))
    assert no_token_logged(receiver, node)


def test_a_product_that_is_down_is_retried_with_back_off_and_gets_every_logout_once_back(products: Any) -> None:
    node, receiver = products                                   # not listening: connection refused
    a, _ = signed_in(node)
    a.logout("/logout/")
    wait_for(lambda: all(row["attempts"] >= 3 for row in outbox(node.env)), 20, "three failed attempts each",
             interval=0.2)
    rows = outbox(node.env)
    assert len(rows) == 2 and not any(row["delivered"] for row in rows)
    assert all("ConnectionRefusedError" in row["last_error"] for row in rows)
    receiver.start()
    wait_for(lambda: len(receiver.received) >= 2, 15, "the logouts once the product is back")
    time.sleep(2.5)
    assert receiver.jtis().most_common(1)[0][1] == 1 and sum(receiver.jtis().values()) == 2
    assert receiver.deliveries() == {("webmail", a.sid, a.sub), ("admin-portal", a.sid, a.sub)}
    rows = outbox(node.env)
    assert all(row["delivered"] and row["attempts"] >= 4 for row in rows), rows
    log = node.log()
    assert '"backchannel logout: failed, will retry"' in log and '"backchannel logout: delivered"' in log
    assert no_token_logged(receiver, node)


def test_a_node_restart_between_logout_and_delivery_loses_nothing(products: Any, stack: Any) -> None:
    """The logout is committed with its outbox rows; the node dies (SIGKILL) before any delivery
    succeeds; while no node runs nothing is sent; another node started later delivers each once."""
    node, receiver = products
    a, _ = signed_in(node)
    a.logout("/logout/")
    wait_for(lambda: all(row["attempts"] >= 1 for row in outbox(node.env)), 10, "a first failed attempt")
    node.kill()
    receiver.start()
    time.sleep(1.5)
    assert receiver.hits == 0
    later = stack("blue-2", **ENV)
    wait_for(lambda: len(receiver.received) >= 2, 20, "the logouts from the new node")
    time.sleep(1.5)
    assert receiver.jtis() == Counter({jti: 1 for jti in receiver.jtis()}) and len(receiver.jtis()) == 2
    assert receiver.deliveries() == {("webmail", a.sid, a.sub), ("admin-portal", a.sid, a.sub)}
    assert '"backchannel logout: delivered"' in later.log()


def test_deliver_logouts_status_names_the_failing_product(products: Any) -> None:
    node, receiver = products
    a, _ = signed_in(node)
    a.logout("/logout/")
    wait_for(lambda: all(row["attempts"] >= 1 for row in outbox(node.env)), 10, "a first failed attempt")
    status = json.loads(manage(node.env, "deliver_logouts", "--status", "--json").stdout)
    assert set(status) == {"webmail", "admin-portal"}
    assert all(row["failing"] == 1 and row["pending"] == 0 and row["delivered_last_day"] == 0
               for row in status.values())
