"""The whole code flow with a real OIDC client library (Authlib) against real gunicorn nodes of both clusters
behind the real router: what a product integrating with the login service does, URL by URL."""
from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from authlib.integrations.base_client import OAuthError

from canary.dataplane.pin import BUCKETS
from deploy.node import free_port
from tests.canary.conftest import PIN_SECRET, Router
from tests.mfa.conftest import enrol_by_shell
from tests.sso import rp
from tests.support import LoginNode, manage

EMAIL, PASSWORD, NAME = "erin@example.test", "a password typed through the router", "Erin Example"
GREEN_PIN, BLUE_PIN = 100, BUCKETS - 1     # buckets: below 50 % of BUCKETS is the canary (green)


@dataclass
class Provider:
    issuer: str
    blue: LoginNode
    green: LoginNode
    router: Router
    webmail: rp.ProductSpec
    admin: rp.ProductSpec


def router_config(*nodes: LoginNode) -> str:
    text = "".join(f'[[clusters]]\nname = "{n.cluster}"\n'
                   f'nodes = [{{name = "{n.name}", address = "127.0.0.1:{n.port}"}}]\n' for n in nodes)
    return text + ("[health_check]\ninterval = 0.1\ntimeout = 0.3\nunhealthy_threshold = 2\nhealthy_threshold = 3\n"
                   "[share]\ninitial_percent = 50\nslow_start_window = 1.0\n")


@pytest.fixture
def provider(stack, tmp_path: Path) -> Iterator[Provider]:
    """blue-1 and green-1 (one database, one Redis, one key ring) behind a router whose origin is the issuer."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {"LOGINSVC_OIDC_ISSUER": issuer, "LOGINSVC_TRUSTED_PROXY_HOPS": "1"}
    blue = stack("blue-1", cluster="blue", **env)
    green = stack("green-1", cluster="green", **env)
    made = manage(blue.env, "shell", "-c", "from loginsvc.accounts.models import User; "
                  f"User.objects.create_user({EMAIL!r}, {PASSWORD!r}, display_name={NAME!r})", check=False)
    assert made.returncode == 0, made.stderr
    base = f"http://127.0.0.1:{free_port()}"      # the products' origin: only its URLs are used
    webmail, admin = rp.ProductSpec("webmail", base), rp.ProductSpec("admin-portal", base)
    rp.register(blue.env, tmp_path, [webmail, admin])
    (tmp_path / "router.toml").write_text(router_config(blue, green))
    router = Router(tmp_path, ["--config", str(tmp_path / "router.toml")], {})
    router.port = port                            # chosen before the nodes: their issuer is this origin
    try:
        router.start()
        router.wait_status(lambda s: all(c["available"] for c in s["clusters"].values()), timeout=10)
        yield Provider(issuer, blue, green, router, webmail, admin)
    finally:
        router.stop(signal.SIGKILL)


def pinned(session: requests.Session, bucket: int) -> requests.Session:
    return rp.pinned(session, PIN_SECRET, bucket)


def test_code_flow_through_the_router_with_authlib(provider: Provider) -> None:
    """Discovery, authorize (the login page, its form and CSRF token), token, ID token against the JWKS,
    userinfo, introspection, refresh with rotation, revocation: the browser is pinned to blue and the
    product's back end to green, so the code issued by blue is redeemed by green."""
    started = time.monotonic()
    browser = pinned(requests.Session(), BLUE_PIN)
    browser_served = rp.served_by(browser)
    metadata = rp.discover(provider.issuer, browser)
    assert rp.discover(provider.issuer, browser, "/oidc") == metadata  # the provider's own prefix too
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]

    product = rp.Product(provider.webmail, metadata)
    pinned(product.session, GREEN_PIN)
    auth = product.start()
    callback = rp.sign_in(browser, auth, provider.webmail.redirect_uri, EMAIL, PASSWORD)
    got = rp.callback_params(callback)
    assert got["state"] == auth.state and got["iss"] == provider.issuer, got  # RFC 9207 iss in the response
    assert rp.clusters(browser_served) == {"blue"}, browser_served

    token = product.redeem(callback, auth)
    assert token["token_type"].lower() == "bearer" and token["scope"].split() == rp.SCOPE.split()
    claims = product.id_token_claims(token, auth.nonce)
    assert claims["iss"] == provider.issuer and claims["aud"] == "webmail" and claims["nonce"] == auth.nonce
    assert claims["exp"] > time.time() and claims["at_hash"] and claims["sid"], claims
    assert abs(claims["auth_time"] - time.time()) < 60, claims

    info = product.userinfo(token["access_token"])
    assert info.status_code == 200, info.text
    assert info.json() == {"sub": claims["sub"], "email": EMAIL, "email_verified": True, "name": NAME,
                           "acr": "1", "amr": ["pwd"]}
    seen = product.introspect(token["access_token"])
    assert seen["active"] is True and seen["client_id"] == "webmail", seen

    # A second product is signed in silently: the central session, through the router.
    admin = rp.Product(provider.admin, metadata)
    admin_auth = admin.start()
    admin_token = admin.redeem(rp.sign_in(browser, admin_auth, provider.admin.redirect_uri, EMAIL, "not asked"),
                               admin_auth)
    admin_claims = admin.id_token_claims(admin_token, admin_auth.nonce)
    assert (admin_claims["sub"], admin_claims["sid"]) == (claims["sub"], claims["sid"])
    assert admin_claims["aud"] == "admin-portal"

    # Refresh: rotation (a new refresh token, the new access token works); a retry of the old one at
    # once gets the same pair; once the new one was used, reuse of the old one revokes the family
    # (RFC 9700 §4.14.2).
    fresh = product.refresh(token["refresh_token"])
    assert fresh["refresh_token"] != token["refresh_token"]
    assert product.id_token_claims(fresh, None)["sub"] == claims["sub"]
    assert product.userinfo(fresh["access_token"]).json()["email"] == EMAIL
    again = product.refresh(token["refresh_token"])
    assert (again["access_token"], again["refresh_token"]) == (fresh["access_token"], fresh["refresh_token"])
    newer = product.refresh(fresh["refresh_token"])
    replay = product.refresh_response(token["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
    assert product.refresh_response(newer["refresh_token"]).json()["error"] == "invalid_grant"
    assert product.introspect(newer["access_token"])["active"] is False

    # Revocation (RFC 7009): the admin portal's tokens, as its back end would on sign-out.
    assert admin.revoke(admin_token["access_token"], "access_token").status_code == 200
    assert admin.userinfo(admin_token["access_token"]).status_code == 401
    assert admin.introspect(admin_token["access_token"])["active"] is False
    assert admin.revoke(admin_token["refresh_token"], "refresh_token").status_code == 200
    with pytest.raises(OAuthError) as refused:
        admin.refresh(admin_token["refresh_token"])
    assert refused.value.error == "invalid_grant"

    assert rp.clusters(product.served) == {"green"}, product.served
    print(f"\ncode flow through the router: {time.monotonic() - started:.2f}s "
          f"(browser on {sorted(set(browser_served))}, back end on {sorted(set(product.served))})")


def test_a_code_is_redeemed_at_a_node_of_the_other_cluster_and_its_tokens_are_valid_at_both(
        provider: Provider) -> None:
    """No router in the back end's path at all: a code issued through the router by blue, redeemed at
    green-1's own address; the tokens work at blue-1's own address too, and the JWKS of both is one."""
    browser = pinned(requests.Session(), BLUE_PIN)
    metadata = rp.discover(provider.issuer, browser)
    product = rp.Product(provider.webmail, metadata)
    auth = product.start()
    callback = rp.sign_in(browser, auth, provider.webmail.redirect_uri, EMAIL, PASSWORD)
    token = dict(product.session.fetch_token(provider.green.url + "/oidc/token/", authorization_response=callback,
                                             state=auth.state, code_verifier=auth.verifier, timeout=rp.TIMEOUT))
    assert product.served[-1] == "green/green-1"
    product.id_token_claims(token, auth.nonce)
    assert requests.get(provider.blue.url + "/oidc/jwks/", timeout=5).json() == \
        requests.get(provider.green.url + "/oidc/jwks/", timeout=5).json()
    for node in (provider.blue, provider.green):
        info = product.userinfo(token["access_token"], node.url + "/oidc/userinfo/")
        assert info.status_code == 200 and info.json()["email"] == EMAIL, (node.name, info.text)
        assert product.introspect(token["access_token"], node.url + "/oidc/introspect/")["active"] is True
    assert [s for s in product.served if s != "?"][-4:] == ["blue/blue-1", "blue/blue-1", "green/green-1",
                                                             "green/green-1"]
    refreshed = product.refresh_response(token["refresh_token"], provider.blue.url + "/oidc/token/")
    assert refreshed.status_code == 200, refreshed.text
    # The code was single use, wherever it is tried again.
    again = product.session.post(provider.blue.url + "/oidc/token/", auth=(product.spec.client_id, rp.SECRET),
                                 timeout=rp.TIMEOUT, data={"grant_type": "authorization_code",
                                                           "code": rp.callback_params(callback)["code"],
                                                           "redirect_uri": provider.webmail.redirect_uri,
                                                           "code_verifier": auth.verifier})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text


def test_acr_values_2_steps_up_a_password_session_with_authlib(provider: Provider) -> None:
    """OpenID Connect Core §3.1.2.1 acr_values and the acr/amr claims (RFC 8176), through the router: a
    session signed in with the password alone (the user had no second factor then) is asked for the
    code, not the password again, when a product asks for acr 2; the ID token then says so."""
    browser = pinned(requests.Session(), BLUE_PIN)
    metadata = rp.discover(provider.issuer, browser)
    assert metadata["acr_values_supported"] == ["1", "2"] and {"acr", "amr"} <= set(metadata["claims_supported"])
    webmail = rp.Product(provider.webmail, metadata)
    first = webmail.start()
    callback = rp.sign_in(browser, first, provider.webmail.redirect_uri, EMAIL, PASSWORD)
    claims = webmail.id_token_claims(webmail.redeem(callback, first), first.nonce)
    assert (claims["acr"], claims["amr"]) == ("1", ["pwd"]), claims

    app = enrol_by_shell(provider.blue.env, EMAIL)
    admin = rp.Product(provider.admin, metadata)
    stepped = admin.start(acr_values="2")
    callback = rp.sign_in(browser, stepped, provider.admin.redirect_uri, EMAIL, "the password is not asked again",
                          code=app.now)
    claims = admin.id_token_claims(admin.redeem(callback, stepped), stepped.nonce)
    assert claims["acr"] == "2" and claims["amr"] == ["pwd", "otp", "mfa"], claims
    assert rp.callback_params(callback)["iss"] == provider.issuer
    # The session is multi-factor now: webmail asking for acr 2 gets its code without a question.
    again = webmail.start(acr_values="2")
    claims = webmail.id_token_claims(webmail.redeem(rp.sign_in(browser, again, provider.webmail.redirect_uri,
                                                               EMAIL, "not asked"), again), again.nonce)
    assert claims["acr"] == "2"
