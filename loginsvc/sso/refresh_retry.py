"""A refresh retried by the same product moments later gets the same answer, not a family revocation.

Why: a product's back end that sent a refresh and lost the answer (a node died, the router failed
over, a timeout) retries with the old refresh token. Rotation has already revoked it, so strict
reuse detection (RFC 9700 §4.14.2) would revoke the whole family and sign the user out of that
product: a failover that users notice. Ory Hydra learnt this the hard way (its "graceful refresh").

The choice: for REFRESH_RETRY_SECONDS (10 s) after a rotation, the same confidential client,
authenticated with its secret (or a mail client: below), presenting the old token gets the very pair the rotation issued
(tokens are stored hashed, so that answer is kept sealed in a RotationReceipt: AES-GCM under a key
derived from the old refresh token, which only its holder knows; the database alone cannot open
it). Not once the pair was revoked (a logout, the user disabled): then the reuse is a replay as
before. After the window, reuse is a replay.

Public clients: only the mail clients' products (LOGINSVC_MAIL_CLIENTS). A mail client stays signed in
for months and refreshes from laptops that sleep mid-request and phones that change networks; without
the window, one lost answer signs it out and the person must sign in again (Okta's and Auth0's
reuse intervals exist for these clients too). The price: a thief holding a mail client's refresh
token who presents it within the window of the real client's rotation gets the same pair instead of
revoking the family, once (a public client's retry is answered once; the next use of the old token is
a replay); outside those seconds, reuse detection is as before. Other public products
(browser apps) get no window: anyone may present their client id, and they rarely lose an answer.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.utils import timezone
from oauth2_provider.models import AccessToken

from loginsvc import conf
from loginsvc.sso.introspection import checksum
from loginsvc.sso.models import RotationReceipt

KEY_CONTEXT = b"loginsvc refresh retry receipt\x00"


def _key(old_token: str) -> bytes:
    """A 256-bit key only the holder of the old refresh token can derive (the token is 256+ bits random)."""
    return hashlib.sha256(KEY_CONTEXT + old_token.encode("utf-8")).digest()


def seal(old_token: str, answer: dict[str, Any]) -> str:
    nonce = os.urandom(12)
    box = AESGCM(_key(old_token)).encrypt(nonce, json.dumps(answer).encode("utf-8"), KEY_CONTEXT)
    return base64.b64encode(nonce + box).decode("ascii")


def unseal(old_token: str, sealed: str) -> dict[str, Any] | None:
    try:
        raw = base64.b64decode(sealed)
        return json.loads(AESGCM(_key(old_token)).decrypt(raw[:12], raw[12:], KEY_CONTEXT))
    except (ValueError, InvalidTag):
        return None


def enabled_for(client: Any) -> bool:
    return conf.get("REFRESH_RETRY_SECONDS") > 0 and (client.client_type == client.CLIENT_CONFIDENTIAL
                                                       or client.client_id in conf.get("MAIL_CLIENTS"))


def keep(old_token: str, client: Any, answer: dict[str, Any]) -> None:
    """Record the answer a rotation of `old_token` gave (in the rotation's transaction)."""
    if not enabled_for(client):
        return
    RotationReceipt.objects.create(
        token_checksum=checksum(old_token), application=client, sealed=seal(old_token, answer),
        expires=timezone.now() + timedelta(seconds=conf.get("REFRESH_RETRY_SECONDS")))


def answer(old_token: str, client: Any) -> dict[str, Any] | None:
    """The answer a retry of `old_token` by the authenticated `client` gets, or None: then the reuse
    is a replay (another client, a public one, too late, or the pair was revoked since)."""
    if not enabled_for(client):
        return None
    receipt = RotationReceipt.objects.filter(token_checksum=checksum(old_token), application=client,
                                             expires__gt=timezone.now()).first()
    if receipt is None:
        return None
    if client.client_type != client.CLIENT_CONFIDENTIAL and not RotationReceipt.objects.filter(pk=receipt.pk).delete()[0]:
        return None   # a public client's retry is answered once: a second presenter is a replay
    body = unseal(old_token, receipt.sealed)
    if body is None or not AccessToken.objects.filter(token_checksum=checksum(body.get("access_token", ""))).exists():
        return None
    return body


def tidy() -> int:
    """Delete receipts past their window; how many."""
    return RotationReceipt.objects.filter(expires__lte=timezone.now()).delete()[0]
