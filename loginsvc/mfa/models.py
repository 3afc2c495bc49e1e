"""What a second factor leaves in the database: an authenticator app's sealed secret, recovery codes' digests."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class TOTPDevice(models.Model):
    """An account's authenticator app (RFC 6238). It counts as a factor once `confirmed` (the user
    typed one code from it). `last_step` is the newest time step accepted: a code of that step or an
    earlier one is refused, on every node, so a code works once (RFC 6238 §5.2)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="totp_device")
    sealed_secret = models.BinaryField(help_text="The shared secret, sealed (mfa/sealing.py).")
    confirmed = models.BooleanField(default=False)
    last_step = models.BigIntegerField(default=0)
    created = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)


class RecoveryCode(models.Model):
    """One of an account's single-use recovery codes, kept as a keyed digest (never the code)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    digest = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "used_at"])]


class EnrolmentDue(models.Model):
    """When a user whom LOGINSVC_MFA_REQUIRED covers must have a second factor: set at the first sign-in
    that told them (that sign-in plus the grace period), kept once set."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    due = models.DateTimeField()
