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


class Passkey(models.Model):
    """A WebAuthn credential of the account (passkeys.py): its public key and what the authenticator
    said of it. `sign_count` is the authenticator's counter at the last use (0: it keeps none); a use
    whose counter does not go up means a cloned authenticator and is refused. Backup eligibility and
    state (the BE/BS flags) say whether the passkey is synced to other devices."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="passkeys")
    credential_id = models.CharField(max_length=1400, unique=True, help_text="base64url, as browsers send it")
    public_key = models.BinaryField(help_text="COSE key, as the authenticator gave it")
    sign_count = models.BigIntegerField(default=0)
    name = models.CharField(max_length=64)
    transports = models.CharField(max_length=200, blank=True, help_text="comma-separated, a hint for browsers")
    aaguid = models.CharField(max_length=36, blank=True)
    backup_eligible = models.BooleanField(default=False)
    backed_up = models.BooleanField(default=False)
    created = models.DateTimeField(default=timezone.now)
    last_used = models.DateTimeField(null=True, blank=True)


class PasskeyChallenge(models.Model):
    """A passkey ceremony's challenge, by digest, until it is spent or expires (ceremonies.py): for what,
    for whom, and for which browser. Deleting the row is what spends it: one DELETE, so of two nodes
    that get the same answer one wins."""

    digest = models.CharField(max_length=64, unique=True)
    purpose = models.CharField(max_length=16)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE, related_name="+")
    browser = models.CharField(max_length=64, help_text="SHA-256 of the browser's CSRF secret")
    until = models.DateTimeField(db_index=True)
