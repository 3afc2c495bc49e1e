"""Mail clients as OAuth clients (RFC 8252 §7.3, RFC 7662 §2.2): the public `mail-client` product with loopback
redirects on any port, the `mail` and `offline_access` scopes, and introspection that tells the mail server
(only it, besides the token's own client) about mail tokens, with the login name Dovecot maps to a mailbox."""
from __future__ import annotations

import base64
import time
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


def _age(tokens_: dict[str, Any], seconds: int) -> None:
    """Move a token's sign-in and its refresh token `seconds` into the past."""
    from datetime import timedelta

    from oauth2_provider.models import RefreshToken

    from loginsvc.sso.introspection import checksum
    from loginsvc.sso.models import SignIn

    refresh = RefreshToken.objects.get(token_checksum=checksum(tokens_["refresh_token"]))
    RefreshToken.objects.filter(pk=refresh.pk).update(created=refresh.created - timedelta(seconds=seconds))
    sign_in = SignIn.objects.get(token_family=refresh.token_family)
    SignIn.objects.filter(pk=sign_in.pk).update(auth_time=sign_in.auth_time - seconds)


def refresh(tokens_: dict[str, Any]) -> Any:
    return Client().post("/oidc/token/", {"grant_type": "refresh_token", "refresh_token": tokens_["refresh_token"],
                                          "client_id": oauth.CLIENT_ID})


@pytest.mark.django_db
def test_offline_access_outlives_the_central_session_within_its_own_lifetimes(user: Any, mail_products: None,
                                                                             settings: Any) -> None:
    from loginsvc.sso import housekeeping
    from loginsvc.sso.models import SignIn

    offline, session_bound = tokens(user), tokens(user, scope="openid mail")
    _age(offline, 11 * 3600)  # past the central session's 10 h, well within 30 days idle and 180 days
    _age(session_bound, 11 * 3600)
    assert refresh(session_bound).status_code == 400
    renewed = refresh(offline)
    assert renewed.status_code == 200 and introspect(DOVECOT, renewed.json()["access_token"])["active"] is True
    housekeeping.stale_sign_ins()
    assert SignIn.objects.filter(offline=True).count() == 1 and not SignIn.objects.filter(offline=False).exists()
    idle = renewed.json()
    _age(idle, settings.LOGINSVC["OFFLINE_IDLE_SECONDS"])  # not used for 30 days
    assert refresh(idle).status_code == 400
    assert introspect(DOVECOT, idle["refresh_token"]) == {"active": False}


@pytest.mark.django_db
def test_rfc9700_4_14_2_a_mail_client_that_lost_a_refresh_answer_gets_it_again_within_the_window(
        user: Any, mail_products: None) -> None:
    """A laptop that slept mid-refresh: the old token again within LOGINSVC_REFRESH_RETRY_SECONDS gets the same
    pair, once; a second retry, or one after the new pair was used, is a replay that revokes the family (the
    window's end is tested with confidential products: tests/sso/test_rfc9700_refresh_rotation.py)."""
    first = tokens(user)
    rotated = refresh(first)
    again = refresh(first)
    assert again.status_code == 200 and again.json() == rotated.json()
    replay = refresh(first)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert introspect(DOVECOT, rotated.json()["access_token"]) == {"active": False}   # the family is revoked

    second = tokens(user)
    rotated = refresh(second)
    assert refresh(rotated.json()).status_code == 200    # the new pair used: the old token's retry is a replay
    assert refresh(second).json()["error"] == "invalid_grant"


@pytest.mark.django_db
def test_offline_access_ends_at_its_maximum_age(user: Any, mail_products: None, settings: Any) -> None:
    from loginsvc.sso.models import SignIn

    got = tokens(user)
    SignIn.objects.update(auth_time=int(time.time()) - settings.LOGINSVC["OFFLINE_MAX_SECONDS"])
    assert refresh(got).status_code == 400


@pytest.mark.django_db
def test_the_sessions_page_lists_mail_programs_and_signs_them_out(user: Any, mail_products: None) -> None:
    from tests.conftest import csrf_from
    from tests.mfa.conftest import post_json

    browser = Client(enforce_csrf_checks=True)
    assert login(browser, user.email, PASSWORD).status_code == 302
    app_password = post_json(browser, "/api/app-passwords", {"name": "Apple Mail", "scope": "mail"}).json()
    got = tokens(user)
    listed = browser.get("/api/sessions").json()["mail_clients"]
    assert sorted((m["kind"], m["name"]) for m in listed) == [("app_password", "Apple Mail"), ("oauth", "Mail app")]
    oauth_client = [m for m in listed if m["kind"] == "oauth"][0]
    assert oauth_client["last_seen"] and oauth_client["first_seen"]
    assert b"Apple Mail" in browser.get("/account/sessions/").content
    delete = {"HTTP_X_CSRFTOKEN": csrf_from(browser)}
    assert browser.delete(f"/api/mail-clients/{oauth_client['id']}", **delete).status_code == 204
    assert introspect(DOVECOT, got["access_token"]) == {"active": False}
    assert browser.delete(f"/api/mail-clients/app-password:{app_password['id']}", **delete).status_code == 204
    assert browser.get("/api/sessions").json()["mail_clients"] == []
    for bogus in ("oauth:999", "oauth:x", "nothing", "app-password:nope"):
        assert browser.delete(f"/api/mail-clients/{bogus}", **delete).status_code == 404


@pytest.mark.django_db
def test_mail_and_offline_access_are_only_for_the_mail_clients_products(user: Any, mail_products: None) -> None:
    from tests.sso.conftest import authorize, pkce, redirect_params

    webmail = register("webmail-2")
    browser = Client()
    assert login(browser, user.email, PASSWORD).status_code == 302
    for scope in ("openid mail", "openid offline_access"):
        got = redirect_params(authorize(browser, webmail, pkce()[1], scope=scope))
        assert got["error"] == "invalid_scope" and "code" not in got


@pytest.mark.django_db
def test_rfc8252_8_6_every_loopback_request_asks_the_person_again(user: Any, mail_products: None) -> None:
    from urllib.parse import urlencode

    from tests.sso.conftest import pkce

    browser = Client()
    assert login(browser, user.email, PASSWORD).status_code == 302
    tokens(user, browser=browser)  # allowed once, and a live token exists
    query = {"response_type": "code", "client_id": oauth.CLIENT_ID, "redirect_uri": "http://127.0.0.1:4444/callback",
             "scope": "openid mail offline_access", "state": "s", "code_challenge": pkce()[1],
             "code_challenge_method": "S256"}
    again = browser.get("/oidc/authorize/?" + urlencode({**query, "approval_prompt": "auto"}))
    assert again.status_code == 200 and b"Allow Mail app" in again.content  # no silent code for another program
    silent = browser.get("/oidc/authorize/?" + urlencode({**query, "prompt": "none"}))
    assert silent.status_code == 302 and "error=consent_required" in silent["Location"]


@pytest.mark.django_db
def test_the_mail_server_does_not_see_refresh_tokens(user: Any, mail_products: None) -> None:
    got = tokens(user)
    assert introspect(DOVECOT, got["refresh_token"]) == {"active": False}
    assert introspect(DOVECOT, got["access_token"])["active"] is True


@pytest.mark.django_db
def test_a_loopback_redirect_works_where_only_https_is_allowed(user: Any, mail_products: None, settings: Any) -> None:
    from oauth2_provider.settings import oauth2_settings

    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ALLOWED_REDIRECT_URI_SCHEMES": ["https"]}
    oauth2_settings.reload()
    try:
        assert tokens(user)["access_token"]
    finally:
        oauth2_settings.reload()


@pytest.mark.django_db
def test_housekeeping_drops_session_bound_refresh_tokens_past_the_session_and_keeps_offline_ones(
        user: Any, mail_products: None, settings: Any) -> None:
    from datetime import timedelta

    from oauth2_provider.models import RefreshToken

    from loginsvc.sso import housekeeping

    offline, bound = tokens(user), tokens(user, scope="openid mail")
    RefreshToken.objects.update(created=RefreshToken.objects.first().created
                                - timedelta(seconds=settings.LOGINSVC["SESSION_MAX_SECONDS"] + 1))
    assert housekeeping.dead_refresh_tokens() == 1
    from loginsvc.sso.introspection import checksum

    assert RefreshToken.objects.filter(token_checksum=checksum(offline["refresh_token"])).exists()
    assert not RefreshToken.objects.filter(token_checksum=checksum(bound["refresh_token"])).exists()
