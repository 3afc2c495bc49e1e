"""Signed pin cookie: a stable random bucket (0..9999) plus issue time, signed with keyed BLAKE2s or HMAC-SHA256.

A tester's pin (testers.py) is the same cookie with another payload, `T.<link id>.<tag>`: it names no bucket but
a tester link, and routes to that link's cluster while the link lives. Ordinary pins never pay for it: the
tester payload is told apart only when a value is first verified, and by a bucket past BUCKETS after that."""
from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import random
from typing import Any, Final

BUCKETS: Final = 10000
TESTER: Final = b"T"     # the first field of a tester's pin (a bucket is digits)
# Buckets need to be uniform, not secret (the MAC protects them): a fast PRNG seeded from the OS, so a
# cookie-less request costs no getrandom() syscall.
_rand: Final = random.Random(int.from_bytes(os.urandom(16), "big"))
MACS: Final = ("blake2s", "hmac-sha256")
_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")   # base64.urlsafe_b64encode's alphabet, without its Python calls
_VERIFIED_MAX: Final = 16384                      # cookie values whose signature was already checked (~3 MB)


class Mac:
    """One way to sign a pin, keyed once per process: the keyed state is copied, never re-keyed, per pin.

    blake2s: BLAKE2s in its keyed mode (RFC 7693 §2.5, a MAC by design), one compression per pin; the key
    is derived from the secret (a BLAKE2s key is at most 32 bytes). hmac-sha256: the standard library's
    HMAC (RFC 2104), as releases before it signed, about three times the work."""

    __slots__ = ("_keyed",)

    def __init__(self, name: str, secret: bytes) -> None:
        if name == "blake2s":
            self._keyed: Any = hashlib.blake2s(key=hashlib.blake2s(secret, person=b"canarypn").digest())
        elif name == "hmac-sha256":
            self._keyed = hmac.new(secret, digestmod=hashlib.sha256)
        else:
            raise ValueError(f"unknown pin MAC {name!r} (one of {', '.join(MACS)})")

    def sign(self, payload: bytes) -> bytes:
        """43 characters of base64url: the 256-bit tag."""
        h = self._keyed.copy()
        h.update(payload)
        return binascii.b2a_base64(h.digest(), newline=False).translate(_URLSAFE)[:43]


class PinSigner:
    """Issues and verifies pin cookies; a forged, expired or garbled cookie simply yields no bucket.

    `fallbacks` are previous keys (like Django's SECRET_KEY_FALLBACKS), and a pin signed with the other MAC
    (the one before an upgrade) counts too: either is re-issued at once with the same bucket under the
    current key and MAC, so rotating the key or the MAC moves nobody."""

    __slots__ = ("key", "name", "ttl", "mac", "_prefix", "_attrs", "_name_eq", "_others", "_verified", "testers",
                 "_secure")

    def __init__(self, secret: str | bytes, cookie_name: str = "canary_pin", ttl: int = 30 * 86400,
                 secure: bool = False, fallbacks: tuple[str | bytes, ...] = (), mac: str = "blake2s") -> None:
        self.key = secret.encode() if isinstance(secret, str) else secret
        self.mac = Mac(mac, self.key)
        keys = [self.key, *(f.encode() if isinstance(f, str) else f for f in fallbacks)]
        self._others = tuple(Mac(m, k) for k in keys for m in MACS if (k, m) != (self.key, mac))
        self.name = cookie_name.encode()
        self.ttl = ttl
        self._name_eq = self.name + b"="
        self._prefix = b"Set-Cookie: " + self._name_eq
        self._secure = b"; Secure" if secure else b""
        self._attrs = self._attributes(ttl)
        # live tester links: link id -> the bucket that names its cluster (BUCKETS + the cluster's index);
        # replaced whole by testers.TesterLinks when links change or expire
        self.testers: dict[bytes, int] = {}
        # value -> (bucket, issued, signed with the current key and MAC): a returning browser's pin is checked
        # once per process, not once per request (only values whose signature verified are kept)
        self._verified: dict[bytes, tuple[int, int, bool]] = {}

    def make_value(self, bucket: int, issued: int) -> bytes:
        payload = b"%d.%d" % (bucket, issued)
        return payload + b"." + self.mac.sign(payload)

    def issue(self, now: float, bucket: int = -1) -> tuple[int, bytes]:
        """Return (bucket, Set-Cookie header line): a new random bucket, or `bucket` re-signed."""
        if bucket < 0:
            bucket = int(_rand.random() * BUCKETS)   # uniform over 0..BUCKETS-1 (53-bit float), in C
        payload = b"%d.%d" % (bucket, int(now))
        return bucket, self._prefix + payload + b"." + self.mac.sign(payload) + self._attrs

    def check(self, value: bytes, now: float) -> tuple[int, bool]:
        """(bucket of a valid cookie value or -1, whether to re-issue it: past half its lifetime or signed
        with a previous key or the other MAC).

        A pin past half its lifetime is re-issued with the *same* bucket, so a browser that keeps
        coming back stays on its cluster indefinitely; only one gone for a whole `ttl` is re-drawn.
        """
        known = self._verified.get(value)
        if known is None:
            known = self._verify(value)
            if known is None:
                return -1, False
        bucket, issued, current = known
        if bucket >= BUCKETS:     # a tester's pin: valid while its link is live, never re-issued
            return self.testers.get(value[2:value.rfind(b".")], -1), False
        if issued + self.ttl < now or issued > now + 300:
            return -1, False
        return bucket, not current or issued + self.ttl / 2 < now

    def _verify(self, value: bytes) -> tuple[int, int, bool] | None:
        parts = value.split(b".")
        if len(parts) != 3:
            return None
        b, t, sig = parts
        if b == TESTER:
            return self._verify_tester(value, t, sig)
        if not (b.isdigit() and t.isdigit() and len(b) <= 5 and len(t) <= 12) or int(b) >= BUCKETS:
            return None
        payload = b + b"." + t
        current = hmac.compare_digest(sig, self.mac.sign(payload))
        # every other key and MAC is tried, each compared in constant time (no early exit between them)
        if not current and not sum(hmac.compare_digest(sig, m.sign(payload)) for m in self._others):
            return None
        known = (int(b), int(t), current)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[value] = known
        return known

    def tester_tag(self, purpose: bytes, link: bytes) -> bytes:
        """The tag of a tester link's URL (purpose b"L") or of its cookie (b"T"): current key and MAC only, so
        rotating the pin key ends every tester link and tester pin (they are re-made in seconds)."""
        return self.mac.sign(purpose + b"." + link)

    def _attributes(self, max_age: int) -> bytes:
        """A pin cookie's attributes and the line's end (a pin's are made once, in __init__)."""
        return b"; Path=/; Max-Age=%d; HttpOnly; SameSite=Lax%s\r\n" % (max_age, self._secure)

    def tester_cookie(self, link: bytes, max_age: int) -> bytes:
        """The Set-Cookie line of a tester's pin: this cookie, so the tester has one pin, never two."""
        return (self._prefix + TESTER + b"." + link + b"." + self.tester_tag(TESTER, link)
                + self._attributes(max(1, max_age)))

    def _verify_tester(self, value: bytes, link: bytes, sig: bytes) -> tuple[int, int, bool] | None:
        if not 0 < len(link) <= 64 or not hmac.compare_digest(sig, self.tester_tag(TESTER, link)):
            return None
        known = (BUCKETS, 0, True)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[value] = known
        return known

    def extract(self, cookie: bytes, now: float) -> tuple[int, bytes | None, bool]:
        """Find our cookie in a Cookie header: (bucket or -1, Cookie header without it or None, stale)."""
        # find(), not `in`: CPython's bytes.__contains__ first tries its operand as an int and raises (and
        # clears) a formatted TypeError for every bytes operand, which costs more than the search
        if cookie.find(self._name_eq) < 0:
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
