"""Second factors' secrets at rest: sealed with AES-256-GCM, looked up by keyed digest, under one key every node shares.

Why a key of its own, not Django's SECRET_KEY: rotating that one (sessions, CSRF) must not make every
authenticator app unreadable. The key is 32 random bytes, base64: LOGINSVC_MFA_KEY (the key itself),
else the file LOGINSVC_MFA_KEY_FILE, else locally var/mfa-key, generated once (0600). Production
requires one of the first two: a key generated per node would leave each node unable to read the
others' secrets. Two subkeys are derived from it (HKDF-SHA256): one seals TOTP secrets, bound to
their owner and purpose (the associated data), so a sealed value copied to another account or
column does not open; one keys the HMAC digests of recovery codes, so a copy of the database alone
cannot test guesses offline.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.exceptions import ImproperlyConfigured

from loginsvc import files

ENV_KEY = "LOGINSVC_MFA_KEY"
NONCE_BYTES = 12


class Unreadable(Exception):
    """A sealed value that does not open under this key and context (another key, or tampered with)."""


def _new_key_text() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n"


@functools.cache
def _subkeys() -> tuple[bytes, bytes]:
    text, source = files.shared_secret(ENV_KEY, "MFA_KEY_FILE", "mfa-key", _new_key_text)
    try:
        key = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        key = b""
    if len(key) != 32:
        raise ImproperlyConfigured(f"{source}: must hold 32 random bytes in base64 "
                                   "(python -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')")

    def derive(purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"loginsvc-mfa/" + purpose).derive(key)

    return derive(b"seal"), derive(b"digest")


def seal(plaintext: bytes, context: str) -> bytes:
    """nonce || AES-GCM(plaintext), authenticated with `context` (e.g. "totp:<user id>")."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(_subkeys()[0]).encrypt(nonce, plaintext, context.encode())


def unseal(sealed: bytes, context: str) -> bytes:
    """What seal() sealed under this `context`; Unreadable otherwise."""
    sealed = bytes(sealed)
    try:
        return AESGCM(_subkeys()[0]).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context.encode())
    except (InvalidTag, ValueError):
        raise Unreadable(context.split(":", 1)[0]) from None


def digest(value: str, context: str) -> str:
    """HMAC-SHA256 of `value` in `context`, hex: what is stored to recognise a recovery code."""
    return hmac.new(_subkeys()[1], f"{context}\x00{value}".encode(), hashlib.sha256).hexdigest()


def check_key(app_configs: object = None, **kwargs: object) -> list:
    """The system check `manage.py check` runs (and so `migrate` at every deploy): a missing or malformed
    key is one error naming it, before any user's secret needs it."""
    from django.core import checks

    try:
        _subkeys()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="loginsvc.mfa.E001")]
    return []
