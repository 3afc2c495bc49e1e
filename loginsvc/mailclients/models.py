"""App passwords: a named, scoped password per mail client, kept only as a keyed digest."""
from __future__ import annotations

from django.conf import settings
from django.db import models

IMAP, SMTP, MAIL = "imap", "smtp", "mail"


class AppPassword(models.Model):
    """One mail client's password (app_passwords.py): the digest is looked up, the password never kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="app_passwords")
    public_id = models.CharField(max_length=24, unique=True)
    name = models.CharField(max_length=64)
    scope = models.CharField(max_length=8, choices=[(IMAP, "IMAP"), (SMTP, "SMTP submission"), (MAIL, "both")])
    digest = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField()
    last_used = models.DateTimeField(null=True)
    last_address = models.CharField(max_length=64, blank=True)
