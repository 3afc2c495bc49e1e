"""A product as the end-to-end tests see it: Authlib's OAuth2Session for its back end, joserfc against the JWKS
for its ID tokens, and a requests.Session that types the login form like a person's browser does.

Nothing here is the provider's code: every check a real product makes goes through the client library, so a
provider that only works with our own helpers (tests/sso/conftest.py) fails here.
"""
from __future__ import annotations

import html.parser
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc import discovery, rpinitiated
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from canary.dataplane.pin import PinSigner

from tests.support import manage

SCOPE = "openid email profile"
SECRET_ENV = "E2E_PRODUCT_SECRET"
SECRET = "e2e-product-secret-" + "k" * 32      # the provider's hasher wants 32+ characters
TIMEOUT = 10.0                                 # every HTTP call: a hung node fails the test, never hangs it
ENDPOINTS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "revocation_endpoint",
             "introspection_endpoint", "end_session_endpoint")


@dataclass(frozen=True)
class ProductSpec:
    """One product as the product file (`manage.py sync_products`) describes it."""

    client_id: str
    base: str                                   # the product's origin, e.g. http://127.0.0.1:PORT (never served)

    @property
    def redirect_uri(self) -> str:
        return f"{self.base}/{self.client_id}/callback"

    def toml(self) -> str:
        q = json.dumps
        return "\n".join([
            "[[product]]", f"client_id = {q(self.client_id)}", f"name = {q(self.client_id.title())}",
            'type = "confidential"', "first_party = true", f"redirect_uris = [{q(self.redirect_uri)}]",
            f"post_logout_redirect_uris = [{q(self.base + '/' + self.client_id + '/')}]",
            f"secret_env = {q(SECRET_ENV)}", "",
        ])


def register(env: dict[str, str], folder: Path, products: list[ProductSpec]) -> Path:
    """Register products the operator's way: a product file and `manage.py sync_products FILE`."""
    path = folder / "e2e-products.toml"
    path.write_text("\n".join(p.toml() for p in products))
    result = manage(dict(env, **{SECRET_ENV: SECRET}), "sync_products", str(path), check=False)
    assert result.returncode == 0, f"sync_products failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return path


def served_by(session: requests.Session) -> list[str]:
    """Record the router's/node's X-Served-By of every response this session gets (`cluster/node`)."""
    seen: list[str] = []

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        seen.append(response.headers.get("X-Served-By", "?"))
    session.hooks["response"].append(hook)
    return seen


def pinned(session: requests.Session, pin_secret: str, bucket: int) -> requests.Session:
    """Pin a client to a cluster the way the router does: a bucket cookie signed with the router's pin key
    (buckets below the canary's percent of canary.dataplane.pin.BUCKETS go to the canary)."""
    value = PinSigner(pin_secret).make_value(bucket, int(time.time())).decode()
    session.cookies.set("canary_pin", value)
    return session


def clusters(served: list[str]) -> set[str]:
    """The clusters named by X-Served-By values (`cluster/node`)."""
    return {s.split("/", 1)[0] for s in served}


def discover(issuer: str, session: requests.Session | None = None, prefix: str = "") -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 §4, checked by Authlib's metadata models; every endpoint is the issuer's."""
    url = issuer + prefix + "/.well-known/openid-configuration"
    response = (session or requests).get(url, timeout=TIMEOUT)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    document = response.json()
    metadata = discovery.OpenIDProviderMetadata(document)
    metadata.validate(metadata_classes=[rpinitiated.OpenIDProviderMetadata])
    assert document["issuer"] == issuer, document["issuer"]
    for name in ENDPOINTS:
        assert document[name].startswith(issuer + "/"), (name, document[name])
    return document


@dataclass
class Authorization:
    """One authorization request the product's back end started (what it keeps in its own session)."""

    url: str
    state: str
    nonce: str
    verifier: str


@dataclass
class Product:
    """The product's back end: an Authlib OAuth2Session with client_secret_basic and PKCE S256."""

    spec: ProductSpec
    metadata: dict[str, Any]
    session: OAuth2Session = field(init=False)
    served: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.session = OAuth2Session(self.spec.client_id, SECRET, scope=SCOPE, redirect_uri=self.spec.redirect_uri,
                                     code_challenge_method="S256", token_endpoint_auth_method="client_secret_basic",
                                     revocation_endpoint_auth_method="client_secret_basic")
        self.session.metadata["token_endpoint"] = self.metadata["token_endpoint"]
        self.served = served_by(self.session)

    def start(self, **extra: str) -> Authorization:
        verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        url, state = self.session.create_authorization_url(self.metadata["authorization_endpoint"], nonce=nonce,
                                                           code_verifier=verifier, **extra)
        return Authorization(url, state, nonce, verifier)

    def redeem(self, callback: str, auth: Authorization) -> dict[str, Any]:
        """The token request (Authlib checks `state` against the callback's)."""
        return dict(self.session.fetch_token(self.metadata["token_endpoint"], authorization_response=callback,
                                             state=auth.state, code_verifier=auth.verifier, timeout=TIMEOUT))

    def key_set(self) -> KeySet:
        response = self.session.get(self.metadata["jwks_uri"], timeout=TIMEOUT, withhold_token=True)
        assert response.status_code == 200, (response.status_code, response.text[:300])
        return KeySet.import_key_set(response.json())

    def id_token_claims(self, token: dict[str, Any], nonce: str | None) -> dict[str, Any]:
        """OpenID Connect Core §3.1.3.7 through Authlib: RS256 signature by a JWKS key, iss, aud, azp, exp,
        iat, nonce (when the request had one) and at_hash."""
        decoded = jwt.decode(token["id_token"], self.key_set(), registry=JWSRegistry(algorithms=["RS256"]))
        assert decoded.header["alg"] == "RS256" and decoded.header.get("kid"), decoded.header
        options = {"iss": {"essential": True, "value": self.metadata["issuer"]},
                   "aud": {"essential": True, "value": self.spec.client_id}}
        params = {"client_id": self.spec.client_id, "access_token": token["access_token"]}
        if nonce is not None:
            params["nonce"] = nonce
        claims = CodeIDToken(decoded.claims, decoded.header, options, params)
        claims.validate(leeway=5)
        return dict(claims)

    def userinfo(self, access_token: str, url: str | None = None) -> requests.Response:
        """The protected resource call, with this token (not the session's last one)."""
        return self.session.get(url or self.metadata["userinfo_endpoint"], timeout=TIMEOUT, withhold_token=True,
                                headers={"Authorization": f"Bearer {access_token}"})

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        return dict(self.session.refresh_token(self.metadata["token_endpoint"], refresh_token=refresh_token,
                                               timeout=TIMEOUT))

    def refresh_response(self, refresh_token: str, url: str | None = None) -> requests.Response:
        """A raw refresh request (for the refusals, which Authlib raises as exceptions)."""
        return self.session.post(url or self.metadata["token_endpoint"], timeout=TIMEOUT,
                                 auth=(self.spec.client_id, SECRET),
                                 data={"grant_type": "refresh_token", "refresh_token": refresh_token})

    def revoke(self, value: str, hint: str) -> requests.Response:
        return self.session.revoke_token(self.metadata["revocation_endpoint"], token=value, token_type_hint=hint,
                                         timeout=TIMEOUT)

    def introspect(self, value: str, url: str | None = None) -> dict[str, Any]:
        response = self.session.introspect_token(url or self.metadata["introspection_endpoint"], token=value,
                                                 timeout=TIMEOUT)
        assert response.status_code == 200, (response.status_code, response.text[:300])
        return response.json()


class _Form(html.parser.HTMLParser):
    """The login page's form: its action and every input's value (the CSRF token among them)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action") or ""
        elif tag == "input" and a.get("name"):
            self.fields[a["name"] or ""] = a.get("value") or ""


def sign_in(browser: requests.Session, auth: Authorization, redirect_uri: str, email: str, password: str,
            max_hops: int = 8, code: Callable[[], str] | None = None) -> str:
    """Follow the authorization request like a browser: to the login page if needed, type the credentials
    into its form (with its CSRF token), and `code()` into the second step's page if one is shown,
    back to authorize, until the redirect to the product's callback, which is returned (the product
    is not running: its URL is only read)."""
    url = auth.url
    for _ in range(max_hops):
        response = browser.get(url, timeout=TIMEOUT, allow_redirects=False)
        typed = {'name="password"': {"username": email, "password": password},
                 'name="code"': {"code": code() if code and 'name="code"' in response.text else ""}}
        for marker, values in typed.items():
            if response.status_code == 200 and marker in response.text:
                assert marker != 'name="code"' or code is not None, "a second step was asked for"
                form = _Form()
                form.feed(response.text)
                assert "csrfmiddlewaretoken" in form.fields, "a form without a CSRF token"
                response = browser.post(urljoin(url, form.action or url), data=dict(form.fields, **values),
                                        timeout=TIMEOUT, allow_redirects=False, headers={"Referer": url})
                break
        assert response.status_code in (302, 303), (url, response.status_code, response.text[:500])
        url = urljoin(url, response.headers["Location"])
        if url.startswith(redirect_uri):
            return url
    raise AssertionError(f"no redirect to {redirect_uri} within {max_hops} hops (last: {url})")


def callback_params(callback: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}

