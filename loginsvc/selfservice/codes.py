"""Codes mailed for self-service: made at random, kept only as keyed digests, bound to the browser that asked."""
from __future__ import annotations

import hashlib
import hmac
import secrets

from django.http import HttpRequest

from loginsvc.mfa import sealing

DIGITS = 8


def browser_of(request: HttpRequest) -> str:
    """The browser a code belongs to: a digest of its CSRF secret (csrf_protect has checked it), as passkey
    ceremonies do; a code read from someone else's screen or mailbox does not work elsewhere."""
    return hashlib.sha256(str(request.META.get("CSRF_COOKIE", "")).encode()).hexdigest()


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
