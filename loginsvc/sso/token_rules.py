"""When a token may still be used: the rules the refresh grant, userinfo and introspection share.

One place, so that introspection never calls a token active that the grant or userinfo would
refuse (RFC 7662 §2.2: "active" means the authorization server would accept it):
- any token: its user is still active (ASVS 3.3.3). Ending a user's right to sign in also
  revokes the user's tokens (sso/logout.py), but this check holds even when that never ran
  (a row changed with raw SQL, a crash between the two).
- a refresh token: not revoked, still paired with an access token, within the toolkit's
  REFRESH_TOKEN_EXPIRE_SECONDS, used within the central session's idle timeout, and its
  sign-in still exists and is younger than the central session may live (the central session
  bounds single sign-on). A sign-in granted offline_access (a mail client) has lifetimes of its
  own instead (`lifetimes`), and still ends when its central session is signed out.
"""
from __future__ import annotations

import time
from typing import Any

from oauth2_provider.models import refresh_token_expire_timedelta

from loginsvc import conf
from loginsvc.sso.models import SignIn
from loginsvc.sso import reads

OFFLINE_ACCESS = "offline_access"  # the scope of a sign-in that outlives the central session (lifetimes)


def user_active(token: Any) -> bool:
    """The token's user may still be signed in; a token without a user (none here) is not refused."""
    user = token.user if token.user_id is not None else None
    return user is None or bool(user.is_active)


def lifetimes(sign_in: SignIn) -> tuple[int, int]:
    """(idle, maximum) seconds of a sign-in's refresh tokens: the central session's, or for a sign-in
    granted offline_access (a mail client that stays signed in for months) LOGINSVC_OFFLINE_*."""
    if sign_in.offline:
        return conf.get("OFFLINE_IDLE_SECONDS"), conf.get("OFFLINE_MAX_SECONDS")
    return conf.get("SESSION_IDLE_SECONDS"), conf.get("SESSION_MAX_SECONDS")


def refresh_sign_in(token: Any, now: float | None = None) -> SignIn | None:
    """The sign-in a refresh token that has not been rotated still continues, or None when the
    grant must refuse it. Revocation and rotation are the caller's to judge (the grant accepts a
    just-rotated token from a retrying client)."""
    now = time.time() if now is None else now
    if not user_active(token) or token.access_token_id is None:
        return None
    sign_in = reads.sign_in_of(token.token_family) if token.token_family else None
    if sign_in is None:
        return None
    idle, most = lifetimes(sign_in)
    if now - token.created.timestamp() >= idle or now - sign_in.auth_time >= most:
        return None
    expires_after = refresh_token_expire_timedelta()
    if expires_after and (token.access_token.expires + expires_after).timestamp() <= now:
        return None
    return sign_in


def refresh_usable(token: Any) -> bool:
    """What the refresh grant would do with this token right now: accept it (a rotated token is
    only accepted from a retrying client, which introspection does not model: inactive)."""
    return token.revoked is None and refresh_sign_in(token) is not None


def access_usable(token: Any) -> bool:
    """An access token until it expires or is revoked (deleted), while its user is active."""
    return token.is_valid() and user_active(token)

