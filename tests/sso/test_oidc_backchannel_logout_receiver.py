"""A product's back-channel logout endpoint for the tests (a real HTTP server), and proof that its checks bite.

Receiver validates every logout token the way OpenID Connect Back-Channel Logout 1.0 §2.6 tells a
relying party to, with jwcrypto against the provider's JWKS: RS256 signature by a published key,
header typ logout+jwt, iss, aud = the client id in the URL path, iat/exp, jti, the back-channel
event, sid and sub, no nonce. The provider's tests count what it accepted; the tests in this file
show that it refuses tokens that break each rule, so an accepted delivery means a valid token.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any, Callable
from urllib.parse import parse_qs

import pytest
from jwcrypto import jwk, jwt

from tests.plugin import lasting_port
from tests.support import LocalReceiver

EVENT = "http://schemas.openid.net/event/backchannel-logout"
ISSUER = "http://127.0.0.1:8000"
REQUIRED = {"iss", "aud", "iat", "exp", "jti", "events", "sub", "sid"}


class Rejected(Exception):
    pass


def check_logout_token(raw: str, jwks: dict[str, Any], client_id: str, issuer: str = ISSUER) -> dict[str, Any]:
    """The token's claims if it is a valid logout token for `client_id` (§2.6), else Rejected."""
    try:
        token = jwt.JWT(jwt=raw, key=jwk.JWKSet.from_json(json.dumps(jwks)), algs=["RS256"],
                        check_claims={"iss": issuer, "aud": client_id, "exp": None, "iat": None, "jti": None})
        header, claims = json.loads(token.header), json.loads(token.claims)
    except Exception as exc:  # noqa: BLE001 - jwcrypto raises several kinds; any is a refusal
        raise Rejected(f"{type(exc).__name__}: {exc}") from None
    if header.get("typ") != "logout+jwt" or header.get("alg") != "RS256" or not header.get("kid"):
        raise Rejected(f"header: {header}")
    if claims.get("events") != {EVENT: {}}:
        raise Rejected(f"events: {claims.get('events')}")
    if "nonce" in claims:
        raise Rejected("nonce present")
    if not claims.get("sid") or not claims.get("sub"):
        raise Rejected("sid and sub required here")
    if set(claims) != REQUIRED or claims["exp"] - claims["iat"] != 120 or abs(claims["iat"] - time.time()) > 60:
        raise Rejected(f"claims: {sorted(claims)} iat={claims.get('iat')} exp={claims.get('exp')}")
    return claims


def fetch_jwks(base_url: str) -> Callable[[], dict[str, Any]]:
    """The provider's JWKS over HTTP, as a product fetches it (for receivers of real nodes)."""
    def get() -> dict[str, Any]:
        with urllib.request.urlopen(base_url + "/oidc/jwks/", timeout=5) as response:
            return json.load(response)
    return get


class Receiver(LocalReceiver):
    """Products' back-channel endpoints on one free port: POST /<client_id>/backchannel-logout.

    `status` is what a valid token gets (a product that errors: 500); `delay` holds each answer
    (a slow product). Accepted claims go to `received` (with the client id), refusals to `rejected`.
    """

    def __init__(self, jwks: Callable[[], dict[str, Any]] | dict[str, Any], port: int = 0,
                 issuer: str = ISSUER, status: int = 200, delay: float = 0.0) -> None:
        super().__init__(port or lasting_port())  # restarted on the same port by some tests
        self.jwks = jwks if callable(jwks) else (lambda: jwks)
        self.issuer, self.status, self.delay = issuer, status, delay
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self.raw: list[str] = []          # every logout token posted (to check none is ever logged)
        self.hits = 0

    def uri(self, client_id: str) -> str:
        return f"http://127.0.0.1:{self.port}/{client_id}/backchannel-logout"

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str]]:
        return self.handle(path, headers.get("Content-Type", ""), body), {"Cache-Control": "no-store"}

    def handle(self, path: str, content_type: str, body: bytes) -> int:
        with self.lock:
            self.hits += 1
        parts = path.strip("/").split("/")
        try:
            if len(parts) != 2 or parts[1] != "backchannel-logout":
                raise Rejected(f"path {path}")
            if content_type.split(";")[0].strip() != "application/x-www-form-urlencoded":
                raise Rejected(f"content type {content_type}")
            form = parse_qs(body.decode("ascii"), strict_parsing=True)
            if list(form) != ["logout_token"] or len(form["logout_token"]) != 1:
                raise Rejected(f"form fields {list(form)}")
            with self.lock:
                self.raw.append(form["logout_token"][0])
            claims = check_logout_token(form["logout_token"][0], self.jwks(), parts[0], self.issuer)
        except (Rejected, ValueError, UnicodeDecodeError) as exc:
            with self.lock:
                self.rejected.append(str(exc))
            return 400
        time.sleep(self.delay)
        with self.lock:
            self.received.append(dict(claims, client_id=parts[0]))
        return self.status

    def jtis(self) -> Counter[str]:
        with self.lock:
            return Counter(claims["jti"] for claims in self.received)

    def deliveries(self) -> set[tuple[str, str, str]]:
        """(client_id, sid, sub) of every accepted token."""
        with self.lock:
            return {(c["client_id"], c["sid"], c["sub"]) for c in self.received}


# --- the receiver's own checks ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def provider_key() -> jwk.JWK:
    return jwk.JWK.generate(kty="RSA", size=2048, kid="k1")


def _signed(key: jwk.JWK, header: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "webmail", "iat": now, "exp": now + 120, "jti": "j-1",
            "events": {EVENT: {}}, "sub": "7", "sid": "s-1"}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    token = jwt.JWT(header=header or {"alg": "RS256", "typ": "logout+jwt", "kid": key.get("kid")}, claims=body)
    token.make_signed_token(key)
    return token.serialize()


def _jwks(key: jwk.JWK) -> dict[str, Any]:
    return {"keys": [json.loads(key.export_public())]}


def test_a_valid_logout_token_passes(provider_key: jwk.JWK) -> None:
    assert check_logout_token(_signed(provider_key), _jwks(provider_key), "webmail")["sid"] == "s-1"


@pytest.mark.parametrize("claims, header", [
    ({"nonce": "n"}, None),                                     # §2.4: a nonce makes it an ID token
    ({"events": None}, None),                                   # §2.4: events is required
    ({"events": {"urn:other": {}}}, None),
    ({"aud": "admin-portal"}, None),                            # §2.6 step 4: aud is this client
    ({"iss": "http://evil.example.test"}, None),
    ({"exp": int(time.time()) - 30, "iat": int(time.time()) - 150}, None),
    ({"sid": None}, None),
    ({"extra": "x"}, None),
    ({}, {"alg": "RS256", "typ": "JWT", "kid": "k1"}),          # explicit typing: logout+jwt
], ids=["nonce", "no-events", "other-event", "aud", "iss", "expired", "no-sid", "extra-claim", "typ"])
def test_a_token_breaking_a_rule_is_refused(provider_key: jwk.JWK, claims: dict[str, Any],
                                            header: dict[str, Any] | None) -> None:
    with pytest.raises(Rejected):
        check_logout_token(_signed(provider_key, header, **claims), _jwks(provider_key), "webmail")


def test_a_token_signed_by_another_key_is_refused(provider_key: jwk.JWK) -> None:
    other = jwk.JWK.generate(kty="RSA", size=2048, kid="k1")    # same kid, not the published key
    with pytest.raises(Rejected):
        check_logout_token(_signed(other), _jwks(provider_key), "webmail")


def test_the_receiver_refuses_a_json_body_and_accepts_the_form(provider_key: jwk.JWK) -> None:
    receiver = Receiver(_jwks(provider_key)).start()
    try:
        token = _signed(provider_key)
        as_json = urllib.request.Request(receiver.uri("webmail"), json.dumps({"logout_token": token}).encode(),
                                         {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(as_json, timeout=5)
        assert refused.value.code == 400
        form = urllib.request.Request(receiver.uri("webmail"), f"logout_token={token}".encode(),
                                      {"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(form, timeout=5) as response:
            assert response.status == 200
        assert receiver.jtis() == Counter({"j-1": 1}) and len(receiver.rejected) == 1
    finally:
        receiver.stop()
