"""OpenID Connect Back-Channel Logout 1.0 §2.1/§2.7 with the central session: which products are told, which tokens die.

One user has two browser sessions (A: webmail, admin-portal and quarantine, which registered no
back-channel URI; B: webmail) and another user is signed in to admin-portal. Ending session A —
the central /logout/ page or RP-initiated /oidc/logout/ — must notify exactly A's products that
have a back-channel URI, with A's sid (the one in A's ID tokens), and revoke exactly A's tokens
(rotated ones included); B and the other user keep working. Logout everywhere (the page and
`manage.py logout_user`) ends both sessions of that user.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.test import Client
from jwcrypto import jws

from loginsvc.sso import backchannel
from loginsvc.sso.models import LogoutDelivery, SignIn
from tests.conftest import PASSWORD, csrf_from, login
from tests.sso.conftest import Product, code_for, exchange, register, token
from tests.sso.test_oidc_backchannel_logout_receiver import Receiver

pytestmark = pytest.mark.django_db


@dataclass
class Tokens:
    product: Product
    access: str
    refresh: str
    id_token: str

    @property
    def sid(self) -> str:
        unverified = jws.JWS()
        unverified.deserialize(self.id_token)
        return json.loads(unverified.objects["payload"])["sid"]

    def active(self) -> bool:
        """RFC 7662 introspection of the access token by its product."""
        response = Client().post("/oidc/introspect/", {"token": self.access}, **self.product.basic())
        assert response.status_code == 200
        return response.json()["active"]

    def refresh_works(self) -> bool:
        response = token(self.product, grant_type="refresh_token", refresh_token=self.refresh)
        assert response.status_code in {200, 400}, response.content
        if response.status_code == 200:
            body = response.json()
            self.access, self.refresh, self.id_token = body["access_token"], body["refresh_token"], body["id_token"]
        else:
            assert response.json()["error"] == "invalid_grant"
        return response.status_code == 200


def sign_in(client: Client, product: Product) -> Tokens:
    code, verifier, _ = code_for(client, product)
    response = exchange(product, code, verifier)
    assert response.status_code == 200, response.content
    body = response.json()
    return Tokens(product, body["access_token"], body["refresh_token"], body["id_token"])


@dataclass
class World:
    receiver: Receiver
    a: Client
    b: Client
    other: Client
    a_tokens: list[Tokens]
    b_tokens: list[Tokens]
    other_tokens: list[Tokens]
    sub: str

    def queued(self) -> set[tuple[str, str, str]]:
        return {(row.application.client_id, row.sid, row.sub)
                for row in LogoutDelivery.objects.select_related("application")}


@pytest.fixture
def world(user: Any) -> Iterator[World]:
    from loginsvc.accounts.models import User

    receiver = Receiver(Client().get("/oidc/jwks/").json()).start()
    webmail = register("webmail", backchannel=receiver.uri("webmail"))
    admin = register("admin-portal", backchannel=receiver.uri("admin-portal"))
    quarantine = register("quarantine")                     # no back-channel URI: revoked, not told
    other_user = User.objects.create_user("bob@example.test", PASSWORD)
    browsers = []
    for email in (user.email, user.email, other_user.email):
        browser = Client(enforce_csrf_checks=True)
        assert login(browser, email, PASSWORD).status_code == 302
        browsers.append(browser)
    a, b, other = browsers
    a_tokens = [sign_in(a, webmail), sign_in(a, admin), sign_in(a, quarantine)]
    assert a_tokens[0].refresh_works()                      # a rotated family: the new tokens must die too
    world = World(receiver, a, b, other, a_tokens, [sign_in(b, webmail)], [sign_in(other, admin)], str(user.pk))
    assert len({t.sid for t in a_tokens}) == 1 and world.b_tokens[0].sid != a_tokens[0].sid
    yield world
    receiver.stop()


def assert_ended(tokens: list[Tokens]) -> None:
    for t in tokens:
        assert not t.active(), t.product.client_id
        assert not t.refresh_works(), t.product.client_id


def assert_alive(tokens: list[Tokens]) -> None:
    for t in tokens:
        assert t.active(), t.product.client_id
        assert t.refresh_works(), t.product.client_id


def assert_delivered(world: World, expected: set[tuple[str, str, str]]) -> None:
    assert world.queued() == expected
    assert backchannel.deliver_due() == len(expected)
    assert world.receiver.deliveries() == expected and world.receiver.rejected == []
    assert sum(world.receiver.jtis().values()) == len(expected)


def test_central_logout_page_tells_every_product_of_that_session_and_revokes_its_tokens(world: World) -> None:
    response = world.a.post("/logout/", {"csrfmiddlewaretoken": csrf_from(world.a)})
    assert response.status_code == 302
    sid = world.a_tokens[0].sid
    assert_delivered(world, {("webmail", sid, world.sub), ("admin-portal", sid, world.sub)})
    assert_ended(world.a_tokens)
    assert_alive(world.b_tokens + world.other_tokens)
    assert not SignIn.objects.filter(sid=sid).exists()


def test_rp_initiated_logout_tells_every_product_of_that_session_and_revokes_its_tokens(world: World) -> None:
    hint = world.a_tokens[1]
    query = {"id_token_hint": hint.id_token, "client_id": "admin-portal", "state": "st-1",
             "post_logout_redirect_uri": "https://admin-portal.example.test/"}
    response = world.a.get("/oidc/logout/?" + urlencode(query))
    assert response.status_code == 302 and response["Location"] == "https://admin-portal.example.test/?state=st-1"
    sid = hint.sid
    assert_delivered(world, {("webmail", sid, world.sub), ("admin-portal", sid, world.sub)})
    assert_ended(world.a_tokens)
    assert_alive(world.other_tokens)
    assert world.a.get("/api/session").json().get("authenticated") is False


def test_rp_initiated_logout_keeps_the_same_users_other_session(world: World) -> None:
    """The toolkit alone would delete every token of the user; settings turn that off (sso/logout.py revokes)."""
    hint = world.a_tokens[1]
    query = {"id_token_hint": hint.id_token, "client_id": "admin-portal",
             "post_logout_redirect_uri": "https://admin-portal.example.test/"}
    assert world.a.get("/oidc/logout/?" + urlencode(query)).status_code == 302
    assert_ended(world.a_tokens)
    assert_alive(world.b_tokens)
    assert backchannel.deliver_due() == 2 and ("webmail", world.b_tokens[0].sid, world.sub) not in world.receiver.deliveries()


def test_rp_initiated_logout_by_someone_else_asks_then_ends_only_that_products_sign_in(world: World) -> None:
    """A browser not signed in as the hint's user is asked first; confirmed, only the hinting product's
    sign-in of that session ends (RP-Initiated Logout 1.0 §2, sso/rp_logout.py)."""
    hint = world.a_tokens[0]
    query = {"id_token_hint": hint.id_token, "client_id": "webmail",
             "post_logout_redirect_uri": "https://webmail.example.test/"}
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/oidc/logout/?" + urlencode(query))
    assert page.status_code == 200 and b'name="allow"' in page.content
    assert world.queued() == set()
    response = browser.post("/oidc/logout/", {**query, "confirmation": "1", "allow": "Logout",
                                              "csrfmiddlewaretoken": browser.cookies["csrftoken"].value})
    assert response.status_code == 302, response.content[:300]
    assert_delivered(world, {("webmail", hint.sid, world.sub)})
    assert_ended([hint])
    assert_alive(world.a_tokens[1:] + world.b_tokens + world.other_tokens)


def _everywhere(world: World) -> set[tuple[str, str, str]]:
    a, b = world.a_tokens[0].sid, world.b_tokens[0].sid
    return {("webmail", a, world.sub), ("admin-portal", a, world.sub), ("webmail", b, world.sub)}


def test_logout_everywhere_page_tells_the_products_of_every_session_of_that_user(world: World) -> None:
    response = world.a.post("/logout/everywhere/", {"csrfmiddlewaretoken": csrf_from(world.a)})
    assert response.status_code == 302
    assert_delivered(world, _everywhere(world))
    assert_ended(world.a_tokens + world.b_tokens)
    assert_alive(world.other_tokens)


def test_manage_logout_user_tells_the_products_of_every_session_of_that_user(world: World, user: Any) -> None:
    call_command("logout_user", user.email)
    assert_delivered(world, _everywhere(world))
    assert_ended(world.a_tokens + world.b_tokens)
    assert_alive(world.other_tokens)


def test_a_code_issued_before_the_logout_cannot_be_redeemed_after_it(world: World) -> None:
    webmail = world.a_tokens[0].product
    code, verifier, _ = code_for(world.a, webmail)
    world.a.post("/logout/", {"csrfmiddlewaretoken": csrf_from(world.a)})
    response = exchange(webmail, code, verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_second_logout_of_the_same_session_queues_nothing_more(world: World, user: Any) -> None:
    from loginsvc.sso import logout

    world.a.post("/logout/", {"csrfmiddlewaretoken": csrf_from(world.a)})
    assert LogoutDelivery.objects.count() == 2
    assert logout.end_sign_ins(user, world.a_tokens[0].sid) == 0 and LogoutDelivery.objects.count() == 2
