"""Signed pin cookie: a stable random bucket (0..9999) plus issue time, HMAC-SHA256 signed."""
from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import random
from typing import Any

BUCKETS = 10000
# Buckets need to be uniform, not secret (the HMAC protects them): a fast PRNG seeded from the OS, so a
# cookie-less request costs no getrandom() syscall.
_rand = random.Random(int.from_bytes(os.urandom(16), "big"))


def _keyed(key: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256 (RFC 2104) inner and outer states keyed once: copying a hash state is ~3x cheaper than
    hmac.digest(), which re-keys on every call (this runs once per request)."""
    k = hashlib.sha256(key).digest() if len(key) > 64 else key
    k = k.ljust(64, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in k)), hashlib.sha256(bytes(b ^ 0x5C for b in k))


_URLSAFE = bytes.maketrans(b"+/", b"-_")   # base64.urlsafe_b64encode's alphabet, without its two Python calls


def _sign(states: tuple[Any, Any], payload: bytes) -> bytes:
    inner = states[0].copy()
    inner.update(payload)
    outer = states[1].copy()
    outer.update(inner.digest())
    return binascii.b2a_base64(outer.digest(), newline=False).translate(_URLSAFE)[:43]


class PinSigner:
    """Issues and verifies pin cookies; a forged, expired or garbled cookie simply yields no bucket.

    `fallbacks` are previous keys (like Django's SECRET_KEY_FALLBACKS): a pin signed with one still counts,
    and is re-issued at once with the same bucket under the current key, so rotating the key moves nobody."""

    __slots__ = ("key", "name", "ttl", "_prefix", "_attrs", "_name_eq", "_states", "_fallbacks")

    def __init__(self, secret: str | bytes, cookie_name: str = "canary_pin", ttl: int = 30 * 86400,
                 secure: bool = False, fallbacks: tuple[str | bytes, ...] = ()) -> None:
        self.key = secret.encode() if isinstance(secret, str) else secret
        self._states = _keyed(self.key)
        self._fallbacks = tuple(_keyed(f.encode() if isinstance(f, str) else f) for f in fallbacks)
        self.name = cookie_name.encode()
        self.ttl = ttl
        self._name_eq = self.name + b"="
        self._prefix = b"Set-Cookie: " + self._name_eq
        self._attrs = b"; Path=/; Max-Age=%d; HttpOnly; SameSite=Lax%s\r\n" % (ttl, b"; Secure" if secure else b"")

    def _sig(self, payload: bytes) -> bytes:
        return _sign(self._states, payload)

    def make_value(self, bucket: int, issued: int) -> bytes:
        payload = b"%d.%d" % (bucket, issued)
        return payload + b"." + self._sig(payload)

    def issue(self, now: float, bucket: int = -1) -> tuple[int, bytes]:
        """Return (bucket, Set-Cookie header line): a new random bucket, or `bucket` re-signed."""
        if bucket < 0:
            bucket = int(_rand.random() * BUCKETS)   # uniform over 0..BUCKETS-1 (53-bit float), in C
        payload = b"%d.%d" % (bucket, int(now))
        return bucket, self._prefix + payload + b"." + _sign(self._states, payload) + self._attrs

    def check(self, value: bytes, now: float) -> tuple[int, bool]:
        """(bucket of a valid cookie value or -1, whether to re-issue it: past half its lifetime or signed
        with a previous key).

        A pin past half its lifetime is re-issued with the *same* bucket, so a browser that keeps
        coming back stays on its cluster indefinitely; only one gone for a whole `ttl` is re-drawn.
        """
        parts = value.split(b".")
        if len(parts) != 3:
            return -1, False
        b, t, sig = parts
        if not (b.isdigit() and t.isdigit() and len(b) <= 5 and len(t) <= 12):
            return -1, False
        payload = b + b"." + t
        rotated = False
        if not hmac.compare_digest(sig, _sign(self._states, payload)):
            # every previous key is tried, each compared in constant time (no early exit between keys)
            if not self._fallbacks or not sum(hmac.compare_digest(sig, _sign(st, payload)) for st in self._fallbacks):
                return -1, False
            rotated = True
        bucket, issued = int(b), int(t)
        if bucket >= BUCKETS or issued + self.ttl < now or issued > now + 300:
            return -1, False
        return bucket, rotated or issued + self.ttl / 2 < now

    def extract(self, cookie: bytes, now: float) -> tuple[int, bytes | None, bool]:
        """Find our cookie in a Cookie header: (bucket or -1, Cookie header without it or None, stale)."""
        if self._name_eq not in cookie:
            return -1, cookie, False
        bucket, stale = -1, False
        kept = []
        for part in cookie.split(b";"):
            p = part.strip()
            if p.startswith(self._name_eq):
                if bucket < 0:
                    bucket, stale = self.check(p[len(self._name_eq):], now)
            elif p:
                kept.append(p)
        return bucket, (b"; ".join(kept) if kept else None), stale
