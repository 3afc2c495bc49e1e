"""Codes mailed for self-service, by digest: a recovery code; an email change's confirmation and its undo."""
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


class EmailChange(models.Model):
    """An account's address being changed (emails.py): a code mailed to the new address confirms it (15 min,
    this browser, 5 wrong entries); once done, a code mailed to the old address undoes it for 7 days."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    old_email = models.EmailField(max_length=254)
    new_email = models.EmailField(max_length=254)
    digest = models.CharField(max_length=64, help_text="the confirmation code's keyed digest")
    browser = models.CharField(max_length=64, help_text="SHA-256 of the asking browser's CSRF secret")
    until = models.DateTimeField()
    wrong = models.PositiveSmallIntegerField(default=0)
    confirmed = models.DateTimeField(null=True, blank=True)
    undo_digest = models.CharField(max_length=64, blank=True, db_index=True)
    undo_until = models.DateTimeField(null=True, blank=True)
    undone = models.DateTimeField(null=True, blank=True)
