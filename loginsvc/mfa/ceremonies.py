"""Passkey ceremonies' state: a challenge per browser, single use, short-lived, seen by every node.

A ceremony is two requests: the options (with a fresh random challenge) and the browser's signed
answer. Between them the challenge waits in the browser's session (bound to its cookie; sessions
live in the Redis and the database that all nodes of both clusters share, so the answer may land on
another node or cluster) and, by digest, in a `PasskeyChallenge` row. Finishing deletes the row:
that single DELETE spends the challenge, so an answer replayed, or sent to two nodes at once, is
accepted once, and it holds while Redis is down. A ceremony lasts `LOGINSVC_WEBAUTHN_CHALLENGE_SECONDS`
(2 min). One ceremony per purpose per browser: starting another replaces it.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from loginsvc import conf
from loginsvc.mfa.models import PasskeyChallenge

SESSION_KEY = "loginsvc_passkey_ceremony"
REGISTER, SIGN_IN, SECOND_STEP = "register", "sign-in", "second-step"


@dataclass(frozen=True)
class Ceremony:
    challenge: bytes
    user_id: int | None  # who registers, or whose second step this is; None for a passkey sign-in


def _digest(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def begin(request: HttpRequest, purpose: str, user_id: int | None = None) -> bytes:
    """A new challenge for this browser's `purpose` ceremony (the previous one of that purpose ends)."""
    challenge = secrets.token_bytes(32)
    seconds = conf.get("WEBAUTHN_CHALLENGE_SECONDS")
    now = timezone.now()
    PasskeyChallenge.objects.filter(until__lte=now).delete()  # the expired ones of everyone: indexed, few
    previous = request.session.get(SESSION_KEY, {}).get(purpose)
    if isinstance(previous, dict):
        PasskeyChallenge.objects.filter(digest=_digest(_decode(previous.get("challenge")))).delete()
    PasskeyChallenge.objects.create(digest=_digest(challenge), until=now + timedelta(seconds=seconds))
    state = dict(request.session.get(SESSION_KEY, {}))
    state[purpose] = {"challenge": base64.urlsafe_b64encode(challenge).decode(), "user_id": user_id,
                      "until": time.time() + seconds}
    request.session[SESSION_KEY] = state
    return challenge


def take(request: HttpRequest, purpose: str) -> Ceremony | None:
    """This browser's `purpose` ceremony, spent now; None when there is none, it expired, or it was
    spent already (here or on another node)."""
    state: Any = request.session.get(SESSION_KEY, {})
    entry = state.pop(purpose, None) if isinstance(state, dict) else None
    if not isinstance(entry, dict):
        return None
    request.session[SESSION_KEY] = state
    challenge = _decode(entry.get("challenge"))
    if not challenge or time.time() >= entry.get("until", 0):
        return None
    spent = PasskeyChallenge.objects.filter(digest=_digest(challenge), until__gt=timezone.now()).delete()[0]
    if spent != 1:
        return None
    user_id = entry.get("user_id")
    return Ceremony(challenge, user_id if isinstance(user_id, int) else None)


def _decode(text: object) -> bytes:
    if not isinstance(text, str):
        return b""
    try:
        return base64.urlsafe_b64decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return b""
