"""A software WebAuthn authenticator for in-process tests: what a platform authenticator sends, byte for byte.

It makes a P-256 key, answers navigator.credentials.create() with "none" attestation and .get() with
an ES256 signature over authenticatorData || SHA-256(clientDataJSON), as W3C WebAuthn §6 lays the
bytes out, and lets a test bend each field (origin, RP ID, flags, counter) to prove the server's
check of it. The browser tests use Chromium's own virtual authenticator instead (test_passkeys_browser.py).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
ORIGIN, RP_ID = "http://localhost:8000", "localhost"  # what the tests' loopback issuer allows


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftAuthenticator:
    """One discoverable credential, user verification on, a counter that goes up by one per use."""

    def __init__(self, synced: bool = False) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0
        self.user_handle = b""
        self.backup_flags = BE | BS if synced else 0

    @property
    def id(self) -> str:
        return b64u(self.credential_id)

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _auth_data(self, rp_id: str, flags: int, attested: bool = False) -> bytes:
        data = hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", self.sign_count)
        if attested:
            data += bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id + self._cose_key()
        return data

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}).encode()

    def create(self, options: dict[str, Any], origin: str = ORIGIN, rp_id: str | None = None,
               flags: int = UP | UV) -> dict[str, Any]:
        """The answer to creation options (as POST /api/passkey/options gave them)."""
        self.user_handle = unb64u(options["user"]["id"])
        auth_data = self._auth_data(rp_id or options["rp"]["id"], flags | AT | self.backup_flags, attested=True)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return {"id": self.id, "rawId": self.id, "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64u(client_data), "attestationObject": b64u(attestation),
                             "transports": ["internal"]}}

    def get(self, options: dict[str, Any], origin: str = ORIGIN, rp_id: str | None = None,
            flags: int = UP | UV, count: int | None = None) -> dict[str, Any]:
        """The answer to request options: the counter goes up by one (or is `count`)."""
        self.sign_count = self.sign_count + 1 if count is None else count
        auth_data = self._auth_data(rp_id or options["rpId"], flags | self.backup_flags)
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {"id": self.id, "rawId": self.id, "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64u(client_data), "authenticatorData": b64u(auth_data),
                             "signature": b64u(signature), "userHandle": b64u(self.user_handle)}}
