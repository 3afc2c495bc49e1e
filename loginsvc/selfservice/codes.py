"""Codes mailed for self-service: made at random, kept only as keyed digests, bound to the browser that asked."""
from __future__ import annotations

import hmac
import secrets

from loginsvc.mfa import sealing
from loginsvc.mfa.ceremonies import browser_of  # the same binding as passkey ceremonies'

__all__ = ["DIGITS", "browser_of", "digest", "matches", "new_code", "parse"]

DIGITS = 8


def new_code() -> str:
    """8 random digits: 10^8 codes, with 5 tries each."""
    return f"{secrets.randbelow(10 ** DIGITS):0{DIGITS}d}"


def digest(purpose: str, subject: str, code: str) -> str:
    """The code's keyed digest (HMAC under the second factors' key), bound to its purpose and subject."""
    return sealing.digest(code, f"{purpose}:{subject}")


def matches(stored: str, purpose: str, subject: str, code: str) -> bool:
    return hmac.compare_digest(stored, digest(purpose, subject, code))


def parse(text: object) -> str | None:
    """The code typed, spaces and hyphens removed, or None unless it is 8 ASCII digits."""
    if not isinstance(text, str):
        return None
    code = text.replace(" ", "").replace("-", "")
    return code if len(code) == DIGITS and code.isascii() and code.isdigit() else None
