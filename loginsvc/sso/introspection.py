"""RFC 7662 §2.2: what introspection tells an authenticated confidential client about a token.

One place for the answer, so that sso/views.introspect_view and the fast path
(sso/fast_token.py) cannot drift apart: `body(client, token)` is the whole JSON object.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from oauth2_provider.models import AccessToken
from oauth2_provider.settings import oauth2_settings

from loginsvc import conf
from loginsvc.sso import central, reads, token_rules

MAX_TOKEN_LENGTH = 512  # a longer `token` is none we issued: inactive, unread
Read = Callable[[str], Any]  # a token checksum -> that token (with its user and client) or None


def checksum(value: str) -> str:
    """The toolkit's token_checksum: SHA-256 of the token, hex. Codes are kept the same way (SignIn.code_hash)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def token_of(value: str, hint: str, access: Read, refresh: Read) -> Any:
    """RFC 7662 §2.1: the token `value` names, the kind `hint` names looked up first, then the other."""
    digest = checksum(value)
    for read in ((refresh, access) if hint == "refresh_token" else (access, refresh)):
        token = read(digest)
        if token is not None:
            return token
    return None


def active(token: Any) -> bool:
    """What the endpoints would do with the token now (token_rules.py): an access token until it
    expires or is revoked, a refresh token while the refresh grant would accept it; neither once
    the user may no longer sign in."""
    if isinstance(token, AccessToken):
        return token_rules.access_usable(token)
    return token_rules.refresh_usable(token)


def scope_of(token: Any) -> str:
    """The scope granted with the token: an access token's own, a refresh token's access token's."""
    if isinstance(token, AccessToken):
        return token.scope
    return token.access_token.scope if token.access_token_id is not None else ""


MAIL = "mail"  # the scope of IMAP and SMTP submission, which the mail server introspects


def may_see(client: Any, token: Any, scope: str) -> bool:
    """A client learns about its own tokens; the mail server (LOGINSVC_MAIL_SERVER_CLIENT) also about
    every access token granted the `mail` scope, which mail clients present to it at IMAP and SMTP login."""
    if token.application_id == client.pk:
        return True
    # Access tokens only: a refresh token presented at IMAP login would never rotate, so reuse
    # detection could not catch a stolen one.
    return (isinstance(token, AccessToken) and client.client_id == conf.get("MAIL_SERVER_CLIENT")
            and MAIL in scope.split())


def body(client: Any, token: Any) -> dict[str, Any]:
    """The answer to `client` about `token` (None: not found): inactive unless `client` may see it.

    Claims follow scopes, as in the ID token and userinfo: `username` (the email address, which is the
    IMAP and SMTP login name) only when the token was granted the `email` or `mail` scope; `sub` always."""
    if token is None or not active(token):
        return {"active": False}
    scope = scope_of(token)
    if not may_see(client, token, scope):
        return {"active": False}
    answer = {"active": True, "client_id": token.application.client_id, "scope": scope,
              "token_type": "Bearer" if isinstance(token, AccessToken) else "refresh_token",
              "iss": oauth2_settings.OIDC_ISS_ENDPOINT, "iat": int(token.created.timestamp())}
    if token.user_id is not None:
        answer["sub"] = str(token.user_id)
        if {"email", MAIL} & set(scope.split()):
            answer["username"] = token.user.email
    if isinstance(token, AccessToken):
        answer["exp"] = int(token.expires.timestamp())
    amr = reads.amr_of_token(token)
    if amr is not None:  # how the token's sign-in authenticated, as its ID token says
        answer.update(acr=central.acr_of(amr), amr=amr.split())
    return answer
