"""Session lifetime: an idle timeout pushed forward at most once a minute, and an absolute maximum.

Django's own expiry is a single idle age (SESSION_COOKIE_AGE). We add an absolute lifetime
counted from login (Keycloak's "SSO session max") and refresh the idle deadline only every
SESSION_TOUCH_SECONDS, because SESSION_SAVE_EVERY_REQUEST would write the database on every
request of every user.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Callable

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from loginsvc import conf

AUTH_TIME = "_auth_time"
AMR = "_amr"  # how the user signed in (RFC 8176 values): ["pwd"], or ["pwd", "otp", "mfa"]
TOUCHED = "_touched"
# What due() may ask for.
LOGOUT = "logout"
TOUCH = "touch"


def start(request: HttpRequest, amr: list[str]) -> None:
    """Mark a fresh login and how it was made; call right after django.contrib.auth.login (which
    cycled the key)."""
    now = int(time.time())
    request.session[AUTH_TIME] = now
    request.session[AMR] = amr
    request.session[TOUCHED] = now
    request.session.set_expiry(conf.get("SESSION_IDLE_SECONDS"))


def expires_at(request: HttpRequest) -> int | None:
    """When this session ends if unused: the earlier of idle and absolute deadlines (epoch seconds)."""
    return session_expires_at(request.session)


def session_expires_at(session: Mapping[str, Any]) -> int | None:
    """expires_at() of a session's data (a SessionStore, or the dict the fast path read from Redis)."""
    auth_time = session.get(AUTH_TIME)
    if auth_time is None:
        return None
    touched = session.get(TOUCHED, auth_time)
    return min(touched + conf.get("SESSION_IDLE_SECONDS"), auth_time + conf.get("SESSION_MAX_SECONDS"))


def due(session: Mapping[str, Any], now: int) -> str | None:
    """What the lifetime rules ask of this session at `now`: LOGOUT, TOUCH (a write) or nothing."""
    auth_time = session.get(AUTH_TIME)
    if auth_time is None:
        return None
    if now - auth_time >= conf.get("SESSION_MAX_SECONDS"):
        return LOGOUT
    if now - session.get(TOUCHED, auth_time) >= conf.get("SESSION_TOUCH_SECONDS"):
        return TOUCH
    return None


class SessionLifetimeMiddleware:
    """Ends sessions past their absolute lifetime and keeps active ones alive cheaply."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        now = int(time.time())
        action = due(request.session, now)
        if action == LOGOUT:
            logout(request)
        elif action == TOUCH:
            request.session[TOUCHED] = now  # marks the session modified: saved with a fresh expiry
        return self.get_response(request)
