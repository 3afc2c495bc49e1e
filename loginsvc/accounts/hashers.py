"""Argon2id with the deployment's configured cost; hashes made with other costs upgrade at next login."""
from __future__ import annotations

from django.contrib.auth.hashers import Argon2PasswordHasher

from loginsvc import conf


class ConfiguredArgon2PasswordHasher(Argon2PasswordHasher):
    """Django's Argon2 hasher, but with costs from LOGINSVC_ARGON2_* instead of class constants.

    The algorithm name stays "argon2", so every existing Argon2 hash still verifies; Django's
    `must_update` compares a hash's parameters with ours, and `check_password` re-hashes on a
    successful login when they differ.
    """

    @property  # type: ignore[override]
    def time_cost(self) -> int:
        return conf.get("ARGON2_TIME_COST")

    @property  # type: ignore[override]
    def memory_cost(self) -> int:
        return conf.get("ARGON2_MEMORY_COST")

    @property  # type: ignore[override]
    def parallelism(self) -> int:
        return conf.get("ARGON2_PARALLELISM")
