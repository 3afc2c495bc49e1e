"""Both clusters are one OpenID provider (the real `make up` stack): codes and tokens cross clusters, and the
flow completes through the router when the cluster that issued the code is killed before the token request."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from canary.dataplane.pin import BUCKETS
from deploy.stack import StackSpec
from tests.plugin import free_port
from tests.sso import rp
from tests.stack.conftest import PASSWORD, RunningStack, start_stack
from tests.stack.test_self_healing import all_healthy

EMAIL = "demo@example.test"
# The stack's canary (green) has 12 % of the buckets: the lowest buckets are green's, the highest blue's.
PIN = {"green": 0, "blue": BUCKETS - 1}


@dataclass
class SsoStack:
    stack: RunningStack
    pin_secret: str
    nodes: dict[str, str]                       # node name -> http://address (for talking to one node)
    webmail: rp.ProductSpec
    admin: rp.ProductSpec

    def browser(self, cluster: str) -> tuple[requests.Session, list[str]]:
        session = rp.pinned(requests.Session(), self.pin_secret, PIN[cluster])
        return session, rp.served_by(session)

    def product(self, spec: rp.ProductSpec, cluster: str) -> rp.Product:
        """The product's back end, pinned to `cluster` (so the router sends it there while it is up)."""
        product = rp.Product(spec, rp.discover(self.stack.base))
        rp.pinned(product.session, self.pin_secret, PIN[cluster])
        return product


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SsoStack]:
    tmp = tmp_path_factory.mktemp("sso-stack")
    stack = start_stack(tmp)
    try:
        spec = StackSpec.load(stack.var_dir)
        env = dict(stack.env, REDIS_URL=spec.effective_redis_url)
        base = f"http://127.0.0.1:{free_port()}"
        webmail, admin = rp.ProductSpec("webmail", base), rp.ProductSpec("admin-portal", base)
        rp.register(env, tmp, [webmail, admin])
        pin_secret = (stack.var_dir / "canary-pin-secret").read_text().strip()
        nodes = {n.name: f"http://{n.address}" for n in spec.nodes}
        stack.wait(lambda: all_healthy(stack), 20, "every process running and healthy")
        yield SsoStack(stack, pin_secret, nodes, webmail, admin)
    finally:
        stack.stop()


def signed_in_code(sso: SsoStack, product: rp.Product, cluster: str) -> tuple[str, rp.Authorization, list[str]]:
    """A browser pinned to `cluster` signs in through the router; (callback URL, authorization, served-by)."""
    browser, served = sso.browser(cluster)
    auth = product.start()
    callback = rp.sign_in(browser, auth, product.spec.redirect_uri, EMAIL, PASSWORD)
    assert rp.clusters(served) == {cluster}, served
    return callback, auth, served


def valid_everywhere(sso: SsoStack, product: rp.Product, token: dict[str, str]) -> None:
    """The access token works at every node's own address: userinfo and introspection."""
    for name, url in sso.nodes.items():
        info = product.userinfo(token["access_token"], url + "/oidc/userinfo/")
        assert info.status_code == 200 and info.json()["email"] == EMAIL, (name, info.status_code, info.text)
        assert info.headers["X-Served-By"].endswith("/" + name)
        assert product.introspect(token["access_token"], url + "/oidc/introspect/")["active"] is True, name


@pytest.mark.parametrize("issuing, redeeming", [("blue", "green"), ("green", "blue")])
def test_a_code_from_one_cluster_is_redeemed_at_the_other_and_tokens_are_valid_at_both(
        sso: SsoStack, issuing: str, redeeming: str) -> None:
    product = sso.product(sso.webmail, redeeming)
    callback, auth, _ = signed_in_code(sso, product, issuing)
    token = product.redeem(callback, auth)
    assert product.served[-1].startswith(redeeming + "/"), product.served
    claims = product.id_token_claims(token, auth.nonce)
    assert claims["iss"] == sso.stack.base and claims["aud"] == "webmail"
    valid_everywhere(sso, product, token)
    jwks = {requests.get(url + "/oidc/jwks/", timeout=5).text for url in sso.nodes.values()}
    assert len(jwks) == 1, jwks                 # one key ring for all four nodes
    # The refresh token, issued by `redeeming`, rotates at a node of `issuing`.
    node = next(url for name, url in sso.nodes.items() if name.startswith(issuing))
    refreshed = product.refresh_response(token["refresh_token"], node + "/oidc/token/")
    assert refreshed.status_code == 200, refreshed.text
    valid_everywhere(sso, product, refreshed.json())


def test_killing_the_cluster_that_issued_the_code_before_the_token_request(sso: SsoStack) -> None:
    """authorize on blue → `python -m deploy kill blue` → token, ID token, userinfo, introspection through
    the router (the back end is pinned to blue too): green answers all of them; the blue-pinned browser
    signs in to a second product silently on green; blue heals and honours the tokens green issued."""
    stack = sso.stack
    restarts = {n: stack.status()[n]["restarts"] for n in ("blue-1", "blue-2")}
    product = sso.product(sso.webmail, "blue")
    callback, auth, _ = signed_in_code(sso, product, "blue")
    product.key_set()
    assert product.served[-1].startswith("blue/"), product.served   # the back end's pin works while blue is up
    retries = stack.retries()

    killed_at = time.monotonic()
    killed = stack.deploy("kill", "blue", timeout=30)
    assert killed.returncode == 0 and killed.stdout.count("killed blue-") == 2, killed
    kill_seconds = time.monotonic() - killed_at

    flow_at = time.monotonic()
    token = product.redeem(callback, auth)
    token_seconds = time.monotonic() - flow_at
    claims = product.id_token_claims(token, auth.nonce)
    info = product.userinfo(token["access_token"])
    assert info.status_code == 200 and info.json()["email"] == EMAIL, info.text
    seen = product.introspect(token["access_token"])
    assert seen["active"] is True and seen["sub"] == claims["sub"], seen
    flow_seconds = time.monotonic() - flow_at
    assert rp.clusters(product.served[-4:]) == {"green"}, product.served   # token, JWKS, userinfo, introspect

    # The same browser (pinned to the dead cluster) gets a code for a second product without a password.
    admin = sso.product(sso.admin, "blue")
    admin_auth = admin.start()
    browser, browser_served = sso.browser("blue")
    callback_admin = rp.sign_in(browser, admin_auth, sso.admin.redirect_uri, EMAIL, PASSWORD)
    admin_token = admin.redeem(callback_admin, admin_auth)
    assert admin.id_token_claims(admin_token, admin_auth.nonce)["sub"] == claims["sub"]
    served_while_down = product.served[-4:] + admin.served + browser_served
    assert all(s.startswith("green/") for s in served_while_down if s != "?"), served_while_down
    print(f"\nkill blue took {kill_seconds:.2f}s; then token {token_seconds:.3f}s, "
          f"token+JWKS+userinfo+introspection {flow_seconds:.3f}s, all served by {sorted(set(product.served[-4:]))}, "
          f"{stack.retries() - retries:g} retried attempts in the router")

    # Heal: supervisord restarts both blue nodes, the router readmits them; green's tokens are valid on blue.
    healed_at = time.monotonic()
    stack.wait(lambda: all_healthy(stack) and all(stack.status()[n]["restarts"] > r for n, r in restarts.items()),
               45, "blue restarted and healthy")
    print(f"blue healthy again after {time.monotonic() - healed_at:.1f}s")
    valid_everywhere(sso, product, token)
    valid_everywhere(sso, admin, admin_token)
    refreshed = product.refresh(token["refresh_token"])
    assert product.id_token_claims(refreshed, None)["sub"] == claims["sub"]


def test_flow_keeps_its_code_single_use_across_clusters(sso: SsoStack) -> None:
    """A code redeemed through green is refused at blue (and the other way round would be the same row)."""
    product = sso.product(sso.webmail, "green")
    callback, auth, _ = signed_in_code(sso, product, "blue")
    product.redeem(callback, auth)
    blue = next(url for name, url in sso.nodes.items() if name.startswith("blue"))
    again = product.session.post(blue + "/oidc/token/", auth=(product.spec.client_id, rp.SECRET), timeout=rp.TIMEOUT,
                                 data={"grant_type": "authorization_code", "code": rp.callback_params(callback)["code"],
                                       "redirect_uri": product.spec.redirect_uri, "code_verifier": auth.verifier})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
