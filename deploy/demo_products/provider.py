"""The login service as a product sees it: discovery (lazy, retried), the JWKS (cached), signed-token checks."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

log = logging.getLogger("demo_products")

HTTP_TIMEOUT = 10.0
DISCOVERY_ATTEMPTS = 4            # ~3 s in all: the provider may still be starting when a browser arrives
METADATA_SECONDS = 3600.0         # re-read discovery hourly (endpoints rarely move, keys do: see below)
MIN_JWKS_REFETCH = 2.0            # seconds between two JWKS fetches (an unknown kid waits for the next one)
LEEWAY = 60                       # clock skew between the provider's nodes and this machine
ALGORITHMS = ["RS256"]            # what the provider signs with; "none" and HS* are never accepted


class ProviderUnavailable(Exception):
    """Discovery or the JWKS could not be fetched: a 503 page, the browser may retry."""


class TokenRejected(Exception):
    """A signed token failed a check; the message says which (never the token itself)."""


class Provider:
    """One issuer's discovery document and keys, shared by the three products (one process, many threads)."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer.rstrip("/")
        self._lock = threading.Lock()
        self._fetching = threading.Lock()     # one JWKS fetch at a time; the others wait and reuse it
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = float("-inf")

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched on first use (not at start: the provider may start after us)."""
        with self._lock:
            if self._metadata is not None and time.monotonic() - self._metadata_at < METADATA_SECONDS:
                return self._metadata
        document = self._fetch_json(self.discovery_url, "discovery")
        if document.get("issuer") != self.issuer:  # OpenID Connect Discovery 1.0 §4.3
            raise ProviderUnavailable(f"discovery: issuer is {document.get('issuer')!r}, expected {self.issuer!r}")
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")
                   if not isinstance(document.get(k), str)]
        if missing:
            raise ProviderUnavailable(f"discovery: missing {', '.join(missing)}")
        with self._lock:
            self._metadata, self._metadata_at = document, time.monotonic()
        return document

    def cached_metadata(self) -> dict[str, Any]:
        """What discovery said last time, without asking again (empty before the first answer)."""
        with self._lock:
            return self._metadata or {}

    def endpoint(self, name: str) -> str | None:
        value = self.metadata().get(name)
        return value if isinstance(value, str) else None

    def key_set(self, refresh_older_than: float | None = None) -> KeySet:
        """The provider's public keys, cached. `refresh_older_than` (a token named a kid the cache
        lacks: a rotation) refetches unless another thread did so after that moment; fetches are at
        least 2 s apart, so a flood of forged kids costs the provider one request per 2 s."""
        with self._fetching:
            with self._lock:
                keys, fetched = self._keys, self._keys_at
            if keys is not None and (refresh_older_than is None or fetched > refresh_older_than):
                return keys
            time.sleep(max(0.0, fetched + MIN_JWKS_REFETCH - time.monotonic()))
            jwks_uri = self.metadata()["jwks_uri"]
            try:
                keys = KeySet.import_key_set(self._fetch_json(jwks_uri, "JWKS", attempts=2))
            except (JoseError, ValueError, TypeError) as exc:
                raise ProviderUnavailable(f"JWKS: not a key set ({exc.__class__.__name__})") from None
            with self._lock:
                self._keys, self._keys_at = keys, time.monotonic()
            return keys

    def decode(self, token: str) -> jwt.Token:
        """Signature and algorithm checked against the JWKS (refetched once for a kid it does not hold)."""
        registry = JWSRegistry(algorithms=ALGORITHMS, strict_check_header=False)
        try:
            asked = time.monotonic()
            try:
                return jwt.decode(token, self.key_set(), registry=registry)
            except InvalidKeyIdError:
                return jwt.decode(token, self.key_set(refresh_older_than=asked), registry=registry)
        except JoseError as exc:
            raise TokenRejected(f"JWS: {exc.error} ({exc.description or 'no detail'})") from None
        except (ValueError, TypeError, UnicodeError) as exc:
            raise TokenRejected(f"malformed token ({exc.__class__.__name__})") from None

    def validate_id_token(self, id_token: str, client_id: str, nonce: str, access_token: str) -> dict[str, Any]:
        """OpenID Connect Core §3.1.3.7 through Authlib: signature, iss, aud, azp, exp, iat, nonce, at_hash."""
        token = self.decode(id_token)
        options = {"iss": {"essential": True, "value": self.issuer},
                   "aud": {"essential": True, "value": client_id}}
        claims = CodeIDToken(token.claims, token.header, options,
                             {"nonce": nonce, "client_id": client_id, "access_token": access_token})
        try:
            claims.validate(leeway=LEEWAY)
        except JoseError as exc:
            raise TokenRejected(f"ID token: {exc.error} ({exc.description or 'no detail'})") from None
        return dict(claims)

    def _fetch_json(self, url: str, what: str, attempts: int = DISCOVERY_ATTEMPTS) -> dict[str, Any]:
        problem = "no attempt"
        for attempt in range(attempts):
            if attempt:
                time.sleep(0.5 * attempt)
            try:
                response = requests.get(url, timeout=HTTP_TIMEOUT, headers={"Accept": "application/json"})
                if response.status_code == 200:
                    document = response.json()
                    if isinstance(document, dict):
                        return document
                    problem = "not a JSON object"
                else:
                    problem = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                problem = exc.__class__.__name__
            except ValueError:
                problem = "not JSON"
        log.warning("%s: %s failed after %d attempts (%s)", what, url, attempts, problem)
        raise ProviderUnavailable(f"{what}: {url} answered {problem}")
