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

Every process re-reads the file at most every OIDC_KEY_RELOAD_SECONDS and compares its content
(SHA-256), not its mtime: a rewrite within the mtime granularity, a copy that keeps the old mtime
(cp -p, rsync -t) or a Kubernetes secret swap are all seen. A ring that turns unreadable or bad
while a process runs is logged and the last good one kept (a botched copy must not stop signing).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from jwcrypto import jwk

from loginsvc import conf, files
from sharedlib.files import replace_private

log = logging.getLogger(__name__)

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
    entry: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # as in the ring file


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

    def states(self, now: float | None = None) -> list[tuple[str, SigningKey, int | None]]:
        """(state, key, published until) of every key: signing, next (not active yet), retired or unpublished."""
        now = time.time() if now is None else now
        signing, published = self.signing_key(now), self.published(now)
        lifetime = conf.get("ACCESS_TOKEN_SECONDS")
        rows = []
        for key in self.keys:
            retired = self.retired_at.get(key.kid)
            until = None if retired is None else retired + lifetime
            if key is signing:
                state = "signing"
            elif key.active_after > now:
                state = "next"
            else:
                state = "retired" if key in published else "unpublished"
            rows.append((state, key, until))
        return rows


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
        keys.append(SigningKey(kid, private, public, entry["active_after"], entry))
    retired = {older.kid: newer.active_after for older, newer in zip(keys, keys[1:])}
    return KeyRing(tuple(keys), retired)


def rotated(text: str, source: str, now: float, publish_seconds: int) -> tuple[str, KeyRing]:
    """The ring `text` plus a new key that signs from now + publish_seconds, minus the keys no longer published.

    The new key is in the JWKS at once and signs only after the delay, so every product's cached JWKS
    knows it first; the key it replaces stays published for a token lifetime after that."""
    current = parse(text, source)
    entries = [key.entry for key in current.keys]
    entries.append({"private_key_pem": new_private_pem(), "active_after": int(now) + publish_seconds})
    grown = parse(dump(entries), source)
    published = {key.kid for key in grown.published(now)}
    new_text = dump([key.entry for key in grown.keys if key.kid in published])
    return new_text, parse(new_text, source)


def describe(ring: KeyRing, now: float | None = None) -> list[str]:
    """One line per key for operators: state, kid, when it signs(ed) from, how long it stays published."""
    def iso(epoch: int) -> str:
        return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    lines = []
    for state, key, until in ring.states(now):
        line = f"{state:<11} {key.kid}  active_after {key.active_after} ({iso(key.active_after)})"
        if until is not None and state != "next":
            line += f", in the JWKS until {iso(until)}"
        lines.append(line)
    return lines


@contextlib.contextmanager
def _rotation_lock(path: Path) -> Iterator[None]:
    """One rotation at a time per ring file: two at once would each drop the other's new key."""
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ImproperlyConfigured(f"LOGINSVC_OIDC_KEY_FILE: cannot write next to {path} ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def rotate_file(publish_seconds: int, now: float | None = None) -> tuple[KeyRing, bool]:
    """Rotate the ring file in place (atomically, 0600): `rotated`; a configured file that does not exist yet
    gets a new one-key ring. (The ring, whether it was created); ImproperlyConfigured names what is wrong."""
    if os.environ.get(ENV_KEY):
        raise ImproperlyConfigured(f"{ENV_KEY}: the keys come from the environment, not a file; rotate the "
                                   "secret in your secret store (add a key to its ring JSON), or use LOGINSVC_OIDC_KEY_FILE")
    path = key_file()
    if not conf.get("OIDC_KEY_FILE") and not settings.PRODUCTION:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = time.time() if now is None else now
    with _rotation_lock(path):
        created = bool(conf.get("OIDC_KEY_FILE")) and not path.exists()
        if created:
            # The first ring (docs: generate the Secret's content this way): nothing published yet, signs at once.
            new_text = new_ring_text(active_after=int(now))
            ring = parse(new_text, f"LOGINSVC_OIDC_KEY_FILE ({path})")
        else:
            text, source = _read_source()
            new_text, ring = rotated(text, source, now, publish_seconds)
        try:
            replace_private(path, new_text)
        except OSError as exc:
            raise ImproperlyConfigured(f"LOGINSVC_OIDC_KEY_FILE: cannot write {path} ({exc.strerror})") from None
    reload()
    return ring, created


def key_file() -> Path:
    configured = conf.get("OIDC_KEY_FILE")
    return Path(configured) if configured else Path(settings.VAR_DIR) / "oidc-keys.json"


def _read_source() -> tuple[str, str]:
    """(text, source name) of the configured ring, creating the local one if needed."""
    return files.shared_secret(ENV_KEY, "OIDC_KEY_FILE", "oidc-keys.json", new_ring_text)


def read_ring() -> KeyRing:
    """The configured ring read and parsed now, not the process's cached one (show_oidc_keys)."""
    return parse(*_read_source())


class _Cache:
    """The parsed ring of this process; the source is read again at most every OIDC_KEY_RELOAD_SECONDS.

    The text is compared by hash, so an unchanged ring costs a small read and no parse."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ring: KeyRing | None = None
        self.digest = b""
        self.bad_digest = b""
        self.checked = 0.0

    def get(self) -> KeyRing:
        ring = self.ring
        now = time.monotonic()
        if ring is not None and now - self.checked < conf.get("OIDC_KEY_RELOAD_SECONDS"):
            return ring
        with self.lock:
            if self.ring is not None and now - self.checked < conf.get("OIDC_KEY_RELOAD_SECONDS"):
                return self.ring
            try:
                text, source = _read_source()
            except ImproperlyConfigured as exc:
                return self._keep_last_good(exc, b"", now)
            digest = hashlib.sha256(text.encode("utf-8")).digest()
            if self.ring is None or digest != self.digest:
                try:
                    ring = parse(text, source)
                except ImproperlyConfigured as exc:
                    return self._keep_last_good(exc, digest, now)
                if self.ring is not None:
                    log.info("oidc keys: ring reloaded", extra={"kids": [k.kid for k in ring.keys]})
                self.ring, self.digest, self.bad_digest = ring, digest, b""
            self.checked = now
            return self.ring

    def _keep_last_good(self, exc: ImproperlyConfigured, digest: bytes, now: float) -> KeyRing:
        """At start a bad ring is fatal; later the last good one is kept, and the problem logged (once per content)."""
        if self.ring is None:
            raise exc
        if not digest or digest != self.bad_digest:
            log.error("oidc keys: the ring cannot be used; still signing with the last good one",
                      extra={"problem": str(exc)})
        self.bad_digest, self.checked = digest, now
        return self.ring

    def clear(self) -> None:
        with self.lock:
            self.ring, self.digest, self.bad_digest, self.checked = None, b"", b"", 0.0


_cache = _Cache()


def ring() -> KeyRing:
    """The current key ring (cheap: a cached object; a small read of the file every few seconds)."""
    return _cache.get()


def reload() -> None:
    """Forget the cached ring (tests, and the rotation command in its own process)."""
    _cache.clear()
