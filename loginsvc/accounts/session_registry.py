"""Which sessions a user has: a row per signed-in browser, so a person can see and end them.

Django's session store is keyed by session key and cannot be asked "which sessions are Ann's?".
A SessionRecord is written at each sign-in (the user_logged_in signal, after login() cycled the key)
and follows the key when it changes without a sign-in (a new password keeps this browser signed in
on a new key; a second step cycles it before signing in): `follow`. The record's id lives in the
session's own data, so a re-authentication in the same browser updates its row instead of adding one.

The session store stays the authority: a record whose session is gone, expired, signed out or
belongs to an old password (Django's session-auth hash) is dead, and `live` drops it when it meets
it. Nothing here is read on the request path of a signed-in user.
"""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.contrib.sessions.backends.base import SessionBase
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from loginsvc import conf
from loginsvc.accounts import sessions
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.known_sources import MAX_USER_AGENT
from loginsvc.accounts.models import SessionRecord, User

RECORD = "_session_record"  # the session's own SessionRecord.public_id


@dataclass(frozen=True)
class LiveSession:
    """A record whose session is still signed in, with what its data says."""

    record: SessionRecord
    data: dict[str, Any]

    @property
    def last_seen(self) -> int:
        """When it was last used, to the minute (sessions.py writes TOUCHED at most once a minute)."""
        return int(self.data.get(sessions.TOUCHED) or self.data.get(sessions.AUTH_TIME) or 0)


def _store(session_key: str | None = None) -> SessionBase:
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


@receiver(user_logged_in)
def _signed_in(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    """A sign-in: this browser's record, updated when the session had one for this user, else new."""
    if request is not None and hasattr(request, "session") and request.session.session_key:
        _record(request, user)


def _record(request: HttpRequest, user: User) -> None:
    fields = {"session_key": request.session.session_key, "address": client_ip(request),
              "user_agent": request.META.get("HTTP_USER_AGENT", "")[:MAX_USER_AGENT],
              "cluster": conf.get("CLUSTER")}
    public_id = request.session.get(RECORD)
    if public_id and SessionRecord.objects.filter(public_id=public_id, user=user).update(**fields):
        return
    SessionRecord.objects.filter(session_key=fields["session_key"]).delete()  # a key reused by another user
    public_id = secrets.token_urlsafe(12)
    SessionRecord.objects.create(user=user, public_id=public_id, created=timezone.now(), **fields)
    request.session[RECORD] = public_id


def follow(request: HttpRequest) -> None:
    """The session's key changed without a sign-in: its record follows (one UPDATE). A signed-in session
    whose record went missing (dropped as dead in a race, or older than the records) gets a new one."""
    public_id = request.session.get(RECORD)
    key = request.session.session_key
    if not key or (public_id and SessionRecord.objects.filter(public_id=public_id).update(session_key=key)):
        return
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and str(request.session.get(SESSION_KEY)) == str(user.pk):
        _record(request, user)


@receiver(user_logged_out)
def _signed_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        public_id = request.session.get(RECORD)
        if public_id:
            SessionRecord.objects.filter(public_id=public_id).delete()


def current_id(request: HttpRequest) -> str | None:
    """The public id of this browser's session record."""
    return request.session.get(RECORD)


def _alive(data: dict[str, Any], user: User, now: int) -> bool:
    """Django's own session check (the same user, the user's current session-auth hash) and the
    lifetime rules (sessions.due)."""
    if str(data.get(SESSION_KEY)) != str(user.pk):
        return False
    stored = str(data.get(HASH_SESSION_KEY, ""))
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]  # SECRET_KEY_FALLBACKS too
    if not any(constant_time_compare(stored, candidate) for candidate in hashes):
        return False
    return sessions.due(data, now) != sessions.LOGOUT and (sessions.session_expires_at(data) or now + 1) > now


def live(user: User) -> list[LiveSession]:
    """The user's signed-in sessions, newest first; dead records are deleted on the way."""
    now, found, dead = int(time.time()), [], []
    for record in SessionRecord.objects.filter(user=user).order_by("-created"):
        store = _store(record.session_key)
        data = dict(store.load())
        if store.session_key == record.session_key and _alive(data, user, now):
            found.append(LiveSession(record, data))
        else:
            dead.append(record.pk)
    if dead:
        SessionRecord.objects.filter(pk__in=dead).delete()
    return found


PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # what secrets.token_urlsafe makes


def well_formed(public_id: object) -> bool:
    """Whether `public_id` can be one of ours: anything else (a NUL byte, which PostgreSQL refuses in text,
    a path) is answered as unknown before it reaches the database."""
    return isinstance(public_id, str) and PUBLIC_ID.fullmatch(public_id) is not None


def find(user: User, public_id: str) -> LiveSession | None:
    """The user's live session named `public_id` (another user's, or a dead one: None)."""
    if not well_formed(public_id):
        return None
    record = SessionRecord.objects.filter(user=user, public_id=public_id).first()
    if record is None:
        return None
    return next((s for s in live(user) if s.record.pk == record.pk), None)


def end(session: LiveSession) -> None:
    """End one session at once, on every node: its data leaves the cache and the database, so the
    next request with its cookie is anonymous. Its product sign-ins are the caller's to end."""
    _store(session.record.session_key).delete(session.record.session_key)
    session.record.delete()


def clear_expired() -> int:
    """Django's `clearsessions` (expired sessions leave the database), then the records whose session
    the store no longer holds; how many records went."""
    _store().__class__.clear_expired()
    if settings.SESSION_ENGINE not in ("django.contrib.sessions.backends.db",
                                       "django.contrib.sessions.backends.cached_db"):
        return 0
    from django.contrib.sessions.models import Session

    return SessionRecord.objects.exclude(session_key__in=Session.objects.values("session_key")).delete()[0]
