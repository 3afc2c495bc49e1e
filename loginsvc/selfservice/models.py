"""A mailed recovery code, by digest, until it is used, guessed wrong too often, or expires."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class PasswordReset(models.Model):
    """One recovery code asked for an address: the same row whether or not the address has an account,
    so that asking costs the same either way (recovery.py). Bound to the browser that asked (a digest
    of its CSRF secret); the code is kept as a keyed digest only."""

    email = models.EmailField(max_length=254)
    digest = models.CharField(max_length=64)
    browser = models.CharField(max_length=64, help_text="SHA-256 of the asking browser's CSRF secret")
    created = models.DateTimeField(default=timezone.now)
    until = models.DateTimeField(db_index=True)
    wrong = models.PositiveSmallIntegerField(default=0)
    used = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["email", "created"])]
