"""Client secrets are long random strings: a salted SHA-256 is as safe for them as Argon2 and 1000x cheaper.

django-oauth-toolkit hashes client secrets with the default password hasher (Argon2id here,
~50 ms per check), which would put a password hash on every token, introspection and revocation
request. A secret of 32+ random characters cannot be brute-forced from a fast hash, so the cost
buys nothing. Guessable input never gets here: verify() refuses anything shorter than
MIN_SECRET_LENGTH, so a user's password could not be checked with this hasher even if one were
ever stored with it.
"""
from __future__ import annotations

import hashlib
import hmac

from django.contrib.auth.hashers import BasePasswordHasher, mask_hash
from django.utils.crypto import constant_time_compare

MIN_SECRET_LENGTH = 32


class ClientSecretHasher(BasePasswordHasher):
    algorithm = "sso_sha256"

    def encode(self, password: str, salt: str) -> str:
        self._check_encode_args(password, salt)
        digest = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
        return f"{self.algorithm}${salt}${digest}"

    def decode(self, encoded: str) -> dict[str, str]:
        algorithm, salt, digest = encoded.split("$", 2)
        assert algorithm == self.algorithm
        return {"algorithm": algorithm, "hash": digest, "salt": salt}

    def verify(self, password: str, encoded: str) -> bool:
        if len(password) < MIN_SECRET_LENGTH:
            return False
        return constant_time_compare(self.encode(password, self.decode(encoded)["salt"]), encoded)

    def safe_summary(self, encoded: str) -> dict[str, str]:
        decoded = self.decode(encoded)
        return {"algorithm": decoded["algorithm"], "salt": mask_hash(decoded["salt"], show=2),
                "hash": mask_hash(decoded["hash"])}

    def harden_runtime(self, password: str, encoded: str) -> None:
        pass
