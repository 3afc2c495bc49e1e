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

MAX_TOKEN_LENGTH = 512  # longer `token` parameters are refused (invalid_request)
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
    """An access token until it expires or is revoked (deleted); a refresh token until revoked or used."""
    if isinstance(token, AccessToken):
        return token.is_valid()
    return token.revoked is None and token.access_token_id is not None


def body(client: Any, token: Any) -> dict[str, Any]:
    """The answer to `client` about `token` (None: not found): inactive unless it is the client's own."""
    if token is None or token.application_id != client.pk or not active(token):
        return {"active": False}
    answer = {"active": True, "client_id": client.client_id, "scope": getattr(token, "scope", ""),
              "token_type": "Bearer" if isinstance(token, AccessToken) else "refresh_token",
              "iss": oauth2_settings.OIDC_ISS_ENDPOINT, "iat": int(token.created.timestamp())}
    if token.user_id is not None:
        answer.update(sub=str(token.user_id), username=token.user.email)
    if isinstance(token, AccessToken):
        answer["exp"] = int(token.expires.timestamp())
    return answer
