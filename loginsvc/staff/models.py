"""The audit trail kept in the database, so ops see an account's history on its admin page."""
from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One loginsvc.audit line about an account (trail.py): never a secret, the same fields as the log."""

    at = models.DateTimeField(db_index=True)
    user_id = models.BigIntegerField(null=True, db_index=True)
    account = models.CharField(max_length=24, blank=True, db_index=True)  # audit.account_tag, when no user_id
    message = models.CharField(max_length=200)
    level = models.CharField(max_length=10)
    client_ip = models.CharField(max_length=64, blank=True)
    staff_id = models.BigIntegerField(null=True)  # who, for an admin's action
    details = models.JSONField(default=dict)

    class Meta:
        ordering = ["-at"]
