"""Session lifetime: an idle timeout pushed forward at most once a minute, and an absolute maximum.

Django's own expiry is a single idle age (SESSION_COOKIE_AGE). We add an absolute lifetime
counted from login (Keycloak's "SSO session max") and refresh the idle deadline only every
SESSION_TOUCH_SECONDS, because SESSION_SAVE_EVERY_REQUEST would write the database on every
request of every user.
"""
from __future__ import annotations

import time
from typing import Callable

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from loginsvc import conf

AUTH_TIME = "_auth_time"
TOUCHED = "_touched"


def start(request: HttpRequest) -> None:
    """Mark a fresh login; call right after django.contrib.auth.login (which cycled the key)."""
    now = int(time.time())
    request.session[AUTH_TIME] = now
    request.session[TOUCHED] = now
    request.session.set_expiry(conf.get("SESSION_IDLE_SECONDS"))


def expires_at(request: HttpRequest) -> int | None:
    """When this session ends if unused: the earlier of idle and absolute deadlines (epoch seconds)."""
    auth_time = request.session.get(AUTH_TIME)
    if auth_time is None:
        return None
    touched = request.session.get(TOUCHED, auth_time)
    return min(touched + conf.get("SESSION_IDLE_SECONDS"), auth_time + conf.get("SESSION_MAX_SECONDS"))


class SessionLifetimeMiddleware:
    """Ends sessions past their absolute lifetime and keeps active ones alive cheaply."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        auth_time = session.get(AUTH_TIME)
        if auth_time is not None:
            now = int(time.time())
            if now - auth_time >= conf.get("SESSION_MAX_SECONDS"):
                logout(request)
            elif now - session.get(TOUCHED, auth_time) >= conf.get("SESSION_TOUCH_SECONDS"):
                session[TOUCHED] = now  # marks the session modified: saved with a fresh expiry
        return self.get_response(request)
