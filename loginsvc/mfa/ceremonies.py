"""Passkey ceremonies' state: a challenge per ceremony, single use, short-lived, bound to the browser, seen by every node.

A ceremony is two requests: the options (with a fresh random challenge) and the browser's signed
answer, which carries the challenge back in its clientDataJSON. Between them the challenge waits, by
digest, in a `PasskeyChallenge` row of the database every node of both clusters shares (so the
answer may land on another node or cluster) with its purpose, its account (who registers, or whose
second step it is) and the browser it was given to: a digest of that browser's CSRF secret, which
every POST here carries in its cookie anyway. No session is written for it, so anonymous visitors
whose page offers passkey autofill leave nothing behind but the row, which expires.
Finishing deletes the row: that single DELETE spends the challenge, so an answer replayed, or sent
to two nodes at once, is accepted once, also while Redis is down. A ceremony lasts
`LOGINSVC_WEBAUTHN_CHALLENGE_SECONDS` (2 min). The signature check itself (py_webauthn) then proves
that the answer signed this very challenge.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from webauthn.helpers import base64url_to_bytes, parse_client_data_json

from loginsvc import conf
from loginsvc.mfa.models import PasskeyChallenge

REGISTER, SIGN_IN, SECOND_STEP = "register", "sign-in", "second-step"
MAX_CLIENT_DATA = 4096  # clientDataJSON is a few hundred bytes; more is not an answer to us


@dataclass(frozen=True)
class Ceremony:
    challenge: bytes
    user_id: int | None  # who registers, or whose second step this is; None for a passkey sign-in


def _digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def browser_of(request: HttpRequest) -> str:
    """The browser a ceremony (or a mailed code: selfservice/codes.py) belongs to: a digest of its CSRF
    secret, which csrf_protect has checked and every POST here carries anyway."""
    return _digest(str(request.META.get("CSRF_COOKIE", "")).encode())


def begin(request: HttpRequest, purpose: str, user_id: int | None = None) -> bytes:
    """A new challenge for a `purpose` ceremony of this browser."""
    challenge = secrets.token_bytes(32)
    now = timezone.now()
    PasskeyChallenge.objects.filter(until__lte=now).delete()  # the expired ones of everyone: indexed, few
    PasskeyChallenge.objects.create(
        digest=_digest(challenge), purpose=purpose, user_id=user_id, browser=browser_of(request),
        until=now + timedelta(seconds=conf.get("WEBAUTHN_CHALLENGE_SECONDS")))
    return challenge


def challenge_of(credential: Any) -> bytes | None:
    """The challenge a browser's answer says it signed (not yet checked), or None unless it has one."""
    response = credential.get("response") if isinstance(credential, dict) else None
    client_data = response.get("clientDataJSON") if isinstance(response, dict) else None
    if not isinstance(client_data, str) or len(client_data) > MAX_CLIENT_DATA:
        return None
    try:
        return parse_client_data_json(base64url_to_bytes(client_data)).challenge
    except Exception:  # noqa: BLE001 - the library raises several kinds for malformed input; all mean "none"
        return None


def take(request: HttpRequest, purpose: str, credential: Any) -> Ceremony | None:
    """The `purpose` ceremony of this browser that `credential` answers, spent now; None when there is
    none (never started, another browser's, expired, or spent already here or on another node)."""
    challenge = challenge_of(credential)
    if not challenge:
        return None
    rows = PasskeyChallenge.objects.filter(digest=_digest(challenge), purpose=purpose, browser=browser_of(request),
                                           until__gt=timezone.now())
    found = rows.values_list("user_id", flat=True).first()
    if rows.delete()[0] != 1:  # of two nodes given the same answer at once, one deletes it
        return None
    return Ceremony(challenge, found)
