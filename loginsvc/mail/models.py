"""What waits to be mailed: the outbox's rows (delivery.py), written in the transaction of the change."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class OutgoingMail(models.Model):
    """One message to one recipient, from the change that caused it until SMTP took it (or we gave up).

    The subject and bodies are sealed at rest (mfa/sealing.py): a message may hold a short-lived code,
    and a copy of the database must not. They are emptied once delivered; the row stays a day (a
    failed one 30 days), so ops can see what went out and what did not (`manage.py mail_outbox`).
    """

    kind = models.CharField(max_length=32, help_text="the template, e.g. mfa_reset")
    to = models.EmailField(max_length=254)
    sealed = models.BinaryField(help_text="subject, text and HTML, sealed (messages.py)")
    needs_account = models.BooleanField(default=False, help_text="sent only if an active account has the address")
    created = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    # None once given up: such a row is never due again (unless ops retry it).
    next_attempt = models.DateTimeField(default=timezone.now, null=True, db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    delivered = models.DateTimeField(null=True, blank=True, db_index=True)
    failed = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [models.Index(fields=["delivered", "next_attempt"])]
