"""The provider's signing keys: one key ring shared by every node of both clusters, rotated without a restart.

Why a ring and not django-oauth-toolkit's OIDC_RSA_PRIVATE_KEY string: every node must sign with
a key the others publish, a rotated-in key must be published before anyone signs with it (products
cache the JWKS), and the old key must stay published until the tokens it signed have expired.
Parsing an RSA key costs about a millisecond, so keys are parsed once per change of the ring, not
per token (django-oauth-toolkit's Application.jwk_key parses the PEM on every call).

Sources, first found wins:
- LOGINSVC_OIDC_PRIVATE_KEY: the ring's JSON or one PEM key, in the environment;
- LOGINSVC_OIDC_KEY_FILE: a file with the same content (a mounted secret);
- local mode only: var/oidc-keys.json, generated once (0600) and then shared by every local node.

The ring file is JSON: {"keys": [{"private_key_pem": ..., "active_after": epoch seconds}, ...]}.
The signing key is the newest whose active_after has passed; a key is published from when it is
added until ID_TOKEN lifetime after its successor took over (`manage.py rotate_oidc_key`).
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from jwcrypto import jwk

from loginsvc import conf, files

ENV_KEY = "LOGINSVC_OIDC_PRIVATE_KEY"
KEY_BITS = 2048
ALGORITHM = "RS256"


@dataclass(frozen=True)
class SigningKey:
    """One RSA key, parsed once: the private JWK signs, `public` is its JWKS entry."""

    kid: str
    private: jwk.JWK
    public: dict[str, Any]
    active_after: int


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[SigningKey, ...]          # oldest first
    retired_at: dict[str, int] = field(default_factory=dict)

    def signing_key(self, now: float | None = None) -> SigningKey:
        """The newest key already active; the oldest one if none is (a ring written in the future)."""
        now = time.time() if now is None else now
        active = [k for k in self.keys if k.active_after <= now]
        return active[-1] if active else self.keys[0]

    def published(self, now: float | None = None) -> list[SigningKey]:
        """Keys in the JWKS: every key not yet retired, or retired less than a token lifetime ago."""
        now = time.time() if now is None else now
        lifetime = conf.get("ACCESS_TOKEN_SECONDS")
        return [k for k in self.keys if now < self.retired_at.get(k.kid, now + 1) + lifetime]

    def by_kid(self, kid: object) -> SigningKey | None:
        """A published key by its id, for verifying tokens we signed (ID token hints)."""
        return next((k for k in self.published() if k.kid == kid), None)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        return {"keys": [k.public for k in self.published()]}


def new_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def new_ring_text(active_after: int = 0) -> str:
    return dump([{"private_key_pem": new_private_pem(), "active_after": active_after}])


def dump(entries: list[dict[str, Any]]) -> str:
    return json.dumps({"keys": entries}, indent=1) + "\n"


def entries_of(text: str, source: str) -> list[dict[str, Any]]:
    """The ring's entries from JSON or a single PEM; a bad ring raises one message naming its source."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        return [{"private_key_pem": stripped, "active_after": 0}]
    try:
        entries = json.loads(stripped)["keys"]
        if not isinstance(entries, list) or not entries:
            raise ValueError("no keys")
        for entry in entries:
            if not isinstance(entry.get("private_key_pem"), str) or not isinstance(entry.get("active_after"), int):
                raise ValueError("each key needs private_key_pem (text) and active_after (epoch seconds)")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ImproperlyConfigured(f"{source}: not a key ring ({exc})") from None
    return entries


def parse(text: str, source: str) -> KeyRing:
    keys = []
    for entry in sorted(entries_of(text, source), key=lambda e: e["active_after"]):
        try:
            private = jwk.JWK.from_pem(entry["private_key_pem"].encode("ascii"))
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            raise ImproperlyConfigured(f"{source}: a key is not an RSA private key in PEM ({exc})") from None
        if private.get("kty") != "RSA" or not private.has_private:
            raise ImproperlyConfigured(f"{source}: every key must be an RSA private key")
        kid = private.thumbprint()
        public = {"alg": ALGORITHM, "use": "sig", "kid": kid, **json.loads(private.export_public())}
        keys.append(SigningKey(kid, private, public, entry["active_after"]))
    retired = {older.kid: newer.active_after for older, newer in zip(keys, keys[1:])}
    return KeyRing(tuple(keys), retired)


def key_file() -> Path:
    configured = conf.get("OIDC_KEY_FILE")
    return Path(configured) if configured else Path(settings.VAR_DIR) / "oidc-keys.json"


def _read_source() -> tuple[str, str, float | None]:
    """(text, source name, file mtime or None) of the configured ring, creating the local one if needed."""
    if os.environ.get(ENV_KEY):
        return os.environ[ENV_KEY], ENV_KEY, None
    path = key_file()
    if not conf.get("OIDC_KEY_FILE"):
        if settings.PRODUCTION:
            raise ImproperlyConfigured("LOGINSVC_OIDC_KEY_FILE: required in production (or LOGINSVC_OIDC_PRIVATE_KEY)")
        files.create_once(path, new_ring_text())
    try:
        return path.read_text(encoding="utf-8"), f"LOGINSVC_OIDC_KEY_FILE ({path})", path.stat().st_mtime
    except OSError as exc:
        raise ImproperlyConfigured(f"LOGINSVC_OIDC_KEY_FILE: cannot read {path} ({exc.strerror})") from None


class _Cache:
    """The parsed ring of this process; the file is looked at again at most every OIDC_KEY_RELOAD_SECONDS."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ring: KeyRing | None = None
        self.mtime: float | None = None
        self.checked = 0.0

    def get(self) -> KeyRing:
        ring = self.ring
        now = time.monotonic()
        if ring is not None and now - self.checked < conf.get("OIDC_KEY_RELOAD_SECONDS"):
            return ring
        with self.lock:
            if self.ring is not None and now - self.checked < conf.get("OIDC_KEY_RELOAD_SECONDS"):
                return self.ring
            if self.ring is not None and self.mtime is not None and _mtime() == self.mtime:
                self.checked = now
                return self.ring
            text, source, mtime = _read_source()
            self.ring, self.mtime, self.checked = parse(text, source), mtime, now
            return self.ring

    def clear(self) -> None:
        with self.lock:
            self.ring, self.mtime, self.checked = None, None, 0.0


def _mtime() -> float | None:
    try:
        return key_file().stat().st_mtime
    except OSError:
        return None


_cache = _Cache()


def ring() -> KeyRing:
    """The current key ring (cheap: a cached object; a stat of the file every few seconds)."""
    return _cache.get()


def reload() -> None:
    """Forget the cached ring (tests, and the rotation command in its own process)."""
    _cache.clear()
