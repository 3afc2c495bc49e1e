"""Mail clients as OAuth clients (RFC 8252 §7.3, RFC 7662 §2.2): the public `mail-client` product with loopback
redirects on any port, the `mail` and `offline_access` scopes, and introspection that tells the mail server
(only it, besides the token's own client) about mail tokens, with the login name Dovecot maps to a mailbox."""
from __future__ import annotations

import base64
from typing import Any

import pytest
from django.test import Client

from tests.conftest import PASSWORD, login
from tests.mailclients import oauth
from tests.sso.conftest import SECRET, register

DOVECOT = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"dovecot:{SECRET}".encode()).decode()}


def tokens(user: Any, scope: str = "openid mail offline_access", port: int = 53682,
           browser: Client | None = None) -> dict[str, Any]:
    """A mail client's tokens, by the code flow in `browser` (else a new one, signed in first)."""
    if browser is None:
        browser = Client()
        assert login(browser, user.email, PASSWORD).status_code == 302
    code, verifier, redirect_uri = oauth.code_flow(browser.get, browser.post, scope=scope, port=port)
    answer = Client().post("/oidc/token/", oauth.token_form(code, verifier, redirect_uri))
    assert answer.status_code == 200, answer.content
    return answer.json()


def introspect(credentials: dict[str, str], token: str) -> dict[str, Any]:
    answer = Client().post("/oidc/introspect/", {"token": token}, **credentials)
    assert answer.status_code == 200, answer.content
    return answer.json()


@pytest.fixture
def mail_products(db: None) -> None:
    register("dovecot")
    register("webmail")
    oauth.register()


def test_scopes_supported_lists_mail_and_offline_access(client: Client) -> None:
    supported = client.get("/.well-known/openid-configuration").json()["scopes_supported"]
    assert {"mail", "offline_access"} <= set(supported)


@pytest.mark.parametrize("port", [53682, 8123, 1])
@pytest.mark.django_db
def test_rfc8252_7_3_any_loopback_port_with_the_exact_path(user: Any, mail_products: None, port: int) -> None:
    got = tokens(user, port=port)
    assert got["refresh_token"] and set(got["scope"].split()) == {"openid", "mail", "offline_access"}


@pytest.mark.django_db
def test_rfc7662_the_mail_server_sees_mail_tokens_with_their_login_name(user: Any, mail_products: None) -> None:
    got = tokens(user)
    seen = introspect(DOVECOT, got["access_token"])
    assert seen["active"] is True and seen["username"] == user.email and seen["client_id"] == oauth.CLIENT_ID
    webmail = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"webmail:{SECRET}".encode()).decode()}
    assert introspect(webmail, got["access_token"]) == {"active": False}  # another product learns nothing


@pytest.mark.django_db
def test_rfc7662_a_token_without_the_mail_scope_is_inactive_to_the_mail_server(user: Any, mail_products: None) -> None:
    got = tokens(user, scope="openid email")
    assert introspect(DOVECOT, got["access_token"]) == {"active": False}


@pytest.mark.django_db
def test_revocation_logout_and_deactivation_end_mail_tokens(user: Any, mail_products: None) -> None:
    revoked, kept = tokens(user), tokens(user)
    assert Client().post("/oidc/revoke/", {"token": revoked["access_token"],
                                                 "client_id": oauth.CLIENT_ID}).status_code == 200
    assert introspect(DOVECOT, revoked["access_token"]) == {"active": False}
    assert introspect(DOVECOT, kept["access_token"])["active"] is True
    browser = Client()
    assert login(browser, user.email, PASSWORD).status_code == 302
    signed_out = tokens(user, browser=browser)
    assert introspect(DOVECOT, signed_out["access_token"])["active"] is True
    browser.post("/logout/", {"csrfmiddlewaretoken": browser.cookies["csrftoken"].value})
    assert introspect(DOVECOT, signed_out["access_token"]) == {"active": False}  # its session signed out
    user.is_active = False
    user.save()
    assert introspect(DOVECOT, kept["access_token"]) == {"active": False}
