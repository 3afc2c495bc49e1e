"""Races between two real gunicorn nodes (one per cluster, one database), and a user disabled on one node.

- RFC 6749 §4.1.2: two nodes redeeming the same code at the same moment: at most one gets tokens,
  never a 500, every refusal is JSON with no-store (§5.2), and nothing issued in a replayed round
  stays active.
- RFC 9700 §4.14.2: two nodes refreshing one token at the same moment: the same confidential
  product gets the same pair from both (a retry); for a public product it is a replay that
  revokes the family.
- ASVS 3.3.3: a user disabled beside one node is refused by the other at its very next request
  (userinfo and introspection take the WSGI fast path), and every product gets its logout token.
- RFC 6238 §5.2: a two-step sign-in started on one cluster finishes on the other, and one
  authenticator-app code posted to both nodes at once signs in once.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from deploy.node import manage, wait_for
from tests import plugin
from tests.mfa.conftest import enrol_by_shell
from tests.sso.test_oidc_backchannel_logout_nodes import EMAIL, ENV, PASSWORD, SECRET, claims_of, prepare
from tests.sso.test_oidc_backchannel_logout_receiver import Receiver, fetch_jwks
from tests.support import Browser, LoginNode, fresh_database, node_env

ROUNDS = 10
PUBLIC = "mobile"
ADD_PUBLIC = """
from oauth2_provider.models import Application
Application.objects.create(client_id="mobile", name="mobile", client_type="public", client_secret="",
    authorization_grant_type="authorization-code", redirect_uris="https://mobile.example.test/callback",
    skip_authorization=True, algorithm="RS256")
"""


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoginNode, LoginNode, Receiver]]:
    """blue-1 and green-1 on one database, products webmail and admin-portal (back-channel URIs on one
    receiver) and the public product mobile; shared by the module's tests (each signs in afresh)."""
    scratch = tmp_path_factory.mktemp("races")
    (scratch / "var").mkdir()
    env = node_env(scratch / "var", plugin.REDIS.url, **ENV)
    fresh_database(env)
    started = [LoginNode(env, cluster, f"{cluster}-1", scratch).start() for cluster in ("blue", "green")]
    receiver = Receiver(fetch_jwks(started[0].url)())
    prepare(env, {"webmail": receiver.uri("webmail"), "admin-portal": receiver.uri("admin-portal")})
    manage(env, "shell", "-v", "0", "-c", ADD_PUBLIC)
    receiver.start()
    yield started[0], started[1], receiver
    receiver.stop()
    for node in started:
        node.stop()


def at_once(*calls: Callable[[], requests.Response]) -> list[requests.Response]:
    """Run the calls in threads released together (a barrier), their responses in order."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results  # type: ignore[return-value]


def code_at(browser: Browser, client_id: str) -> tuple[str, str, str]:
    """(code, verifier, redirect_uri) for a signed-in browser."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect_uri = f"https://{client_id}.example.test/callback"
    response = browser.call("GET", "/oidc/authorize/?" + urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "openid email",
        "state": "s", "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256"}))
    assert response.status_code == 302, response.text[:300]
    return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0], verifier, redirect_uri


def token_call(node: LoginNode, client_id: str, **data: str) -> Callable[[], requests.Response]:
    auth = (client_id, SECRET) if client_id != PUBLIC else None
    if auth is None:
        data["client_id"] = client_id
    return lambda: requests.post(node.url + "/oidc/token/", data=data, auth=auth, timeout=20)


def is_json_refusal(response: requests.Response) -> bool:
    """RFC 6749 §5.2: JSON, not stored by caches."""
    return (response.status_code == 400 and response.headers["Content-Type"].startswith("application/json")
            and "no-store" in response.headers.get("Cache-Control", "") and response.json()["error"] == "invalid_grant")


def active(node: LoginNode, tokens: dict[str, Any], client_id: str = "webmail") -> tuple[bool, bool, bool]:
    """(userinfo answers, introspection says active, a refresh works) on `node`."""
    userinfo = requests.get(node.url + "/oidc/userinfo/", timeout=10,
                            headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 200
    introspected = requests.post(node.url + "/oidc/introspect/", data={"token": tokens["access_token"]},
                                 auth=("webmail" if client_id == PUBLIC else client_id, SECRET), timeout=10).json()
    refreshed = token_call(node, client_id, grant_type="refresh_token", refresh_token=tokens["refresh_token"])()
    return userinfo, introspected["active"] if client_id != PUBLIC else False, refreshed.status_code == 200


def signed_in(node: LoginNode) -> Browser:
    browser = Browser(node.url)
    assert browser.login(EMAIL, PASSWORD).status_code == 200
    return browser


def test_4_1_2_two_nodes_redeeming_one_code_at_once_never_both_never_500_nothing_survives(nodes: Any) -> None:
    blue, green, _receiver = nodes
    browser, replayed = signed_in(blue), 0
    for _round in range(ROUNDS):
        code, verifier, redirect_uri = code_at(browser, "webmail")
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}
        answers = at_once(token_call(blue, "webmail", **form), token_call(green, "webmail", **form))
        assert all(a.status_code in (200, 400) for a in answers), [(a.status_code, a.text[:200]) for a in answers]
        winners = [a.json() for a in answers if a.status_code == 200]
        assert len(winners) <= 1
        assert all(is_json_refusal(a) for a in answers if a.status_code != 200), [a.headers for a in answers]
        if len(winners) < len(answers):  # a replayed round: what the code gave is revoked
            replayed += 1
            for winner in winners:
                assert active(green, winner) == (False, False, False)
    assert replayed == ROUNDS  # two redemptions of one code: every round is a replay


def test_4_14_2_two_nodes_refreshing_at_once_give_the_same_confidential_product_one_pair(nodes: Any) -> None:
    blue, green, _receiver = nodes
    browser = signed_in(blue)
    code, verifier, redirect_uri = code_at(browser, "webmail")
    tokens = token_call(blue, "webmail", grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
                        code_verifier=verifier)().json()
    for _round in range(ROUNDS):
        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        answers = at_once(token_call(blue, "webmail", **form), token_call(green, "webmail", **form))
        assert [a.status_code for a in answers] == [200, 200], [(a.status_code, a.text[:200]) for a in answers]
        first, second = (a.json() for a in answers)
        assert (first["access_token"], first["refresh_token"]) == (second["access_token"], second["refresh_token"])
        assert first["refresh_token"] != tokens["refresh_token"]
        tokens = first
    assert active(blue, tokens)[:2] == (True, True)


def test_4_14_2_two_nodes_refreshing_a_public_products_token_at_once_is_a_replay(nodes: Any) -> None:
    blue, green, _receiver = nodes
    browser = signed_in(blue)
    for _round in range(3):
        code, verifier, redirect_uri = code_at(browser, PUBLIC)
        tokens = token_call(blue, PUBLIC, grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
                            code_verifier=verifier)().json()
        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        answers = at_once(token_call(blue, PUBLIC, **form), token_call(green, PUBLIC, **form))
        statuses = sorted(a.status_code for a in answers)
        # The loser revokes the family, which may reach the winner's pair before its answer is sent.
        assert statuses in ([200, 400], [400, 400]), [(a.status_code, a.text[:200]) for a in answers]
        assert all(is_json_refusal(a) for a in answers if a.status_code != 200)
        for winner in (a.json() for a in answers if a.status_code == 200):
            assert active(green, winner, PUBLIC) == (False, False, False)
        assert active(green, tokens, PUBLIC) == (False, False, False)


def set_active(env: dict[str, str], value: bool) -> None:
    """Flip is_active with raw SQL, behind the models' back (no signal, nothing revoked)."""
    if env.get("DATABASE_URL"):
        import psycopg

        with psycopg.connect(env["DATABASE_URL"], connect_timeout=5) as db:
            db.execute("UPDATE accounts_user SET is_active = %s WHERE email = %s", (value, EMAIL))
        return
    with sqlite3.connect(Path(env["LOGINSVC_VAR_DIR"]) / "db.sqlite3", timeout=10) as db:
        db.execute("UPDATE accounts_user SET is_active = ? WHERE email = ?", (value, EMAIL))


def test_3_3_3_a_user_disabled_beside_green_is_refused_by_blue_at_once_and_every_product_told(nodes: Any) -> None:
    blue, green, receiver = nodes
    browser = signed_in(blue)
    got = {}
    for client_id in ("webmail", "admin-portal"):
        code, verifier, redirect_uri = code_at(browser, client_id)
        got[client_id] = token_call(blue, client_id, grant_type="authorization_code", code=code,
                                    redirect_uri=redirect_uri, code_verifier=verifier)().json()
    sid = claims_of(got["webmail"]["id_token"])["sid"]
    # Behind the models' back: nothing revoked, yet every endpoint of the other node refuses at once.
    set_active(green.env, False)
    assert active(blue, dict(got["webmail"])) == (False, False, False)
    set_active(green.env, True)
    before = len(receiver.received)
    # An operator's shell with green's environment: the bulk update ends every sign-in of the user.
    manage(green.env, "shell", "-v", "0", "-c",
           f"from loginsvc.accounts.models import User; User.objects.filter(email={EMAIL!r}).update(is_active=False)")
    try:
        for client_id, tokens in got.items():
            assert active(blue, tokens, client_id) == (False, False, False), client_id
        wait_for(lambda: {("webmail", sid), ("admin-portal", sid)} <= {(c, s) for c, s, _sub in receiver.deliveries()},
                 15, "a logout token for each product")
        assert len(receiver.received) > before and receiver.rejected == []
    finally:
        set_active(green.env, True)


TWO_STEP_EMAIL = "two-step@example.test"


def second_step(browser: Browser, node: LoginNode, code: str) -> Callable[[], requests.Response]:
    return lambda: browser.call("POST", "/api/login/mfa", node.url, json={"method": "totp", "code": code},
                                headers={"X-CSRFToken": browser.csrf_token()})


def test_rfc6238_5_2_two_steps_across_clusters_and_one_code_signs_in_once(nodes: Any) -> None:
    blue, green, _receiver = nodes
    app = enrol_by_shell(blue.env, TWO_STEP_EMAIL, PASSWORD)
    first = Browser(blue.url)
    assert first.login(TWO_STEP_EMAIL, PASSWORD).json() == {"mfa_required": True, "methods": ["totp"]}
    assert first.whoami(green.url) == {"authenticated": False}
    finished = second_step(first, green, app.now())()  # the password on blue, the code on green
    assert finished.status_code == 200, finished.text
    assert first.whoami(blue.url)["amr"] == ["pwd", "otp", "mfa"]
    # The next step's code, from two browsers on two nodes at the same moment: one sign-in.
    code = app.at(time.time() + 30)
    racers = [Browser(node.url) for node in (blue, green)]
    for browser in racers:
        assert browser.login(TWO_STEP_EMAIL, PASSWORD).json()["mfa_required"] is True
    answers = at_once(second_step(racers[0], blue, code), second_step(racers[1], green, code))
    assert sorted(a.status_code for a in answers) == [200, 401], [(a.status_code, a.text[:200]) for a in answers]
