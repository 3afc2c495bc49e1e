"""The central session as single sign-on sees it: its SSO id (sid), when the user authenticated in it."""
from __future__ import annotations

import secrets
import time

from django.http import HttpRequest

from loginsvc.accounts import sessions

SID = "_sso_sid"
REAUTH = "_sso_reauth_asked"   # when prompt=login or max_age last asked this session for the password


def sid(request: HttpRequest) -> str:
    """This session's sid, created at its first sign-in to a product.

    Random and separate from the session key: products learn it (ID tokens, logout tokens), and
    must not learn something that would let them present the user's session. Django keeps session
    data when the same user signs in again (cycle_key) and flushes it for another user, so a sid
    names one user's session, across re-authentication.
    """
    value = request.session.get(SID)
    if not value:
        value = request.session[SID] = secrets.token_urlsafe(24)
    return value


def current_sid(request: HttpRequest) -> str | None:
    """The sid, or None when this session never signed in to a product (nothing to notify)."""
    return request.session.get(SID)


def auth_time(request: HttpRequest) -> int:
    """When the user last entered their password in this session (epoch seconds)."""
    return int(request.session.get(sessions.AUTH_TIME) or time.time())


def too_old(request: HttpRequest, max_age: int | None) -> bool:
    """OpenID Connect Core §3.1.2.1 max_age: the authentication is older than the product allows."""
    return max_age is not None and time.time() - auth_time(request) > max_age


def ask_reauthentication(request: HttpRequest) -> None:
    """Remember that this session must type the password before its next code, whatever the URL.

    The way back from the login page drops prompt=login and max_age (the fresh login satisfies
    them; max_age=0 kept would ask forever), so without this a user who edits the URL back to the
    authorize endpoint would skip the password."""
    request.session[REAUTH] = int(time.time())


def reauthentication_pending(request: HttpRequest) -> bool:
    """True until the user has authenticated again after the last ask; then the ask is forgotten."""
    asked = request.session.get(REAUTH)
    if asked is None:
        return False
    if auth_time(request) >= asked:
        del request.session[REAUTH]
        return False
    return True


def amr(request: HttpRequest) -> list[str]:
    """How the user authenticated in this session (RFC 8176 values); a password for sessions from
    before it was kept."""
    return list(request.session.get(sessions.AMR) or ["pwd"])


def acr_of(amr: list[str] | str) -> str:
    """OpenID Connect `acr`: "2" for a multi-factor authentication, "1" otherwise (Keycloak's default
    level names). A passkey with user verification will count as multi-factor too."""
    values = amr.split() if isinstance(amr, str) else amr
    return "2" if "mfa" in values else "1"
