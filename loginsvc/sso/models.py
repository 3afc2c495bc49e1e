"""What single sign-on adds to django-oauth-toolkit's models: products' logout URIs, sign-ins per session, the outbox."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Product(models.Model):
    """The parts of a registered product that django-oauth-toolkit's Application has no field for."""

    application = models.OneToOneField(settings.OAUTH2_PROVIDER_APPLICATION_MODEL, on_delete=models.CASCADE, related_name="product")
    # OpenID Connect Back-Channel Logout 1.0 §2.2: where the logout token is POSTed. Empty: none.
    backchannel_logout_uri = models.URLField(max_length=2048, blank=True)
    # Codes only for multi-factor sign-ins (acr "2"): a password-only session is asked for its second factor.
    require_mfa = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.application.client_id


class SignIn(models.Model):
    """One product signed in through one central session: what logout must revoke and notify.

    `sid` is the central session's SSO id (a random value kept in the session, never the session
    key itself, which products must not learn). It links the authorization code (while it lives)
    and then the refresh-token family that the code started, so the ID tokens of refreshes carry
    the same sid and auth_time, and logout revokes exactly this session's tokens.
    """

    sid = models.CharField(max_length=64, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    application = models.ForeignKey(settings.OAUTH2_PROVIDER_APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+")
    auth_time = models.BigIntegerField(help_text="When the user last authenticated in that session (epoch s).")
    # RFC 8176 values of that authentication, space-separated: "pwd", or "pwd otp mfa" with a second factor.
    amr = models.CharField(max_length=64, default="pwd")
    # Granted offline_access (a mail client that stays signed in): its tokens live by LOGINSVC_OFFLINE_*
    # rather than the central session's lifetimes; ending that session still ends them.
    offline = models.BooleanField(default=False)
    code_hash = models.CharField(max_length=64, blank=True, db_index=True, help_text="SHA-256 of the code.")
    token_family = models.UUIDField(null=True, blank=True, db_index=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["user", "application"])]


class LogoutDelivery(models.Model):
    """The outbox of back-channel logouts: a row lives until the product confirmed it (or we gave up).

    Written in the same transaction as the logout that causes it, so a crash between the two
    loses nothing; delivered by whichever process claims it first (`claimed_until` is a lease),
    retried with back-off while the product is down.
    """

    jti = models.UUIDField(default=uuid.uuid4, unique=True)
    application = models.ForeignKey(settings.OAUTH2_PROVIDER_APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+")
    uri = models.URLField(max_length=2048)
    sub = models.CharField(max_length=255)
    sid = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt = models.DateTimeField(default=timezone.now, db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    delivered = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [models.Index(fields=["delivered", "next_attempt"])]


class RotationReceipt(models.Model):
    """The answer a refresh gave, kept a few seconds for the same client's retry (sso/refresh_retry.py).

    Tokens are stored hashed, so the new pair cannot be read back from the token tables; the
    receipt holds it sealed with a key derived from the old refresh token, which only its holder
    knows. Looked up by the old token's checksum, written in the rotation's own transaction.
    """

    token_checksum = models.CharField(max_length=64, unique=True)
    application = models.ForeignKey(settings.OAUTH2_PROVIDER_APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+")
    sealed = models.TextField()
    expires = models.DateTimeField(db_index=True)
