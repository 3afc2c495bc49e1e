"""Passkeys (WebAuthn Level 3) on py_webauthn: options, registration and sign-in checks, the sign counter.

py_webauthn does the CBOR, COSE and attestation parsing and every check of the W3C algorithm (type,
challenge, origin, RP ID hash, user presence and verification, signature). Around it this module
keeps the service's choices (docs/security.md, "Passkeys"):
- the relying party is `LOGINSVC_WEBAUTHN_RP_ID` and the origins `LOGINSVC_WEBAUTHN_ORIGINS`
  (conf.webauthn_party), checked in every ceremony;
- user verification is required, so a passkey is two factors at once (something held, and the PIN
  or biometric that unlocks it): acr 2;
- attestation `none`: the service trusts the key it is given, not a vendor's certificate, which
  keeps synced passkeys (the ones people have) working;
- the user handle is an HMAC of the account id, so the authenticator stores no email address;
- the sign counter is compared here, after the signature checked out: a counter that does not go
  up proves a copied key (W3C WebAuthn §6.1.1), and only a valid signature may raise that alarm.
"""
from __future__ import annotations

import binascii
import time
from dataclasses import dataclass
from typing import Any

import webauthn
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from webauthn.helpers import exceptions as webauthn_errors
from webauthn.helpers import structs

from loginsvc import conf
from loginsvc.accounts import sessions
from loginsvc.mfa import sealing
from loginsvc.mfa.ceremonies import Ceremony
from loginsvc.mfa.models import Passkey

RP_NAME = "Mail login"
MAX_PER_ACCOUNT = 20
MAX_NAME_LENGTH = 64
MAX_CREDENTIAL_ID_LENGTH = 1400  # base64url of WebAuthn's 1023-byte limit
_BAD_INPUT = (webauthn_errors.WebAuthnException, ValueError, TypeError, KeyError, AttributeError, binascii.Error)


class Refused(Exception):
    """A ceremony's answer that does not hold; `str()` is safe to show (no key material)."""


class CounterWentBack(Refused):
    """A valid signature whose sign counter did not go up: the passkey has been copied."""

    def __init__(self, passkey: Passkey, seen: int) -> None:
        super().__init__("This passkey's sign counter went back: it may have been copied.")
        self.passkey, self.seen = passkey, seen


@dataclass(frozen=True)
class Used:
    """A passkey that signed in: whose, and what RFC 8176 says about how."""

    passkey: Passkey

    @property
    def amr(self) -> list[str]:
        # A synced passkey's private key lives in software (a password manager's vault), a device-bound
        # one in the device's secure hardware. User verification: "user" (the method is not told).
        return ["swk" if self.passkey.backed_up else "hwk", "user"]


def party() -> tuple[str, tuple[str, ...]]:
    """This process's RP ID and allowed origins."""
    return conf.webauthn_party(settings.LOGINSVC)


def user_handle(user: Any) -> bytes:
    """The WebAuthn user.id of `user`: 32 bytes that name the account to us and to nobody else."""
    return bytes.fromhex(sealing.digest(str(user.pk), "webauthn-user"))


def _descriptors(user: Any) -> list[structs.PublicKeyCredentialDescriptor]:
    rows = Passkey.objects.filter(user=user).values_list("credential_id", "transports")
    return [structs.PublicKeyCredentialDescriptor(
        id=webauthn.base64url_to_bytes(cid),
        transports=[structs.AuthenticatorTransport(t) for t in transports.split(",") if _transport(t)])
        for cid, transports in rows]


TRANSPORTS = frozenset(t.value for t in structs.AuthenticatorTransport)


def _transport(name: str) -> bool:
    return name in TRANSPORTS


REAUTH_SECONDS = 300  # within this long of signing in, adding a passkey needs no password again


def password_due(session: Any) -> bool:
    """Whether adding a passkey asks for the password: unless the session signed in moments ago. A
    new passkey is a new way in without the password, so a stolen session alone must not add one
    (ASVS 3.7.1)."""
    auth_time = session.get(sessions.AUTH_TIME)
    return not isinstance(auth_time, int) or time.time() - auth_time > REAUTH_SECONDS


def registration_options(user: Any, challenge: bytes) -> str:
    """PublicKeyCredentialCreationOptions as JSON: a discoverable credential preferred (so it can sign
    in without an email address), user verification required, no attestation, none of the
    account's own passkeys again (excludeCredentials)."""
    rp_id, _ = party()
    options = webauthn.generate_registration_options(
        rp_id=rp_id, rp_name=RP_NAME, user_name=user.email, user_display_name=user.email,
        user_id=user_handle(user), challenge=challenge, timeout=conf.get("WEBAUTHN_CHALLENGE_SECONDS") * 1000,
        attestation=structs.AttestationConveyancePreference.NONE,
        authenticator_selection=structs.AuthenticatorSelectionCriteria(
            resident_key=structs.ResidentKeyRequirement.PREFERRED,
            user_verification=structs.UserVerificationRequirement.REQUIRED),
        exclude_credentials=_descriptors(user))
    return webauthn.options_to_json(options)


def authentication_options(challenge: bytes, user: Any = None) -> str:
    """PublicKeyCredentialRequestOptions as JSON: for a sign-in without a name, no allowCredentials
    (the authenticator offers its discoverable passkeys for this RP ID); for a second step, the
    account's own passkeys."""
    rp_id, _ = party()
    options = webauthn.generate_authentication_options(
        rp_id=rp_id, challenge=challenge, timeout=conf.get("WEBAUTHN_CHALLENGE_SECONDS") * 1000,
        allow_credentials=_descriptors(user) if user is not None else [],
        user_verification=structs.UserVerificationRequirement.REQUIRED)
    return webauthn.options_to_json(options)


def register(user: Any, ceremony: Ceremony, credential: Any, name: str) -> Passkey:
    """Check the browser's answer to `registration_options` and keep the new passkey."""
    if ceremony.user_id != user.pk:
        raise Refused("This passkey was started for another account. Start again.")
    if Passkey.objects.filter(user=user).count() >= MAX_PER_ACCOUNT:
        raise Refused(f"An account can have at most {MAX_PER_ACCOUNT} passkeys. Remove one first.")
    rp_id, origins = party()
    try:
        verified = webauthn.verify_registration_response(
            credential=credential, expected_challenge=ceremony.challenge, expected_rp_id=rp_id,
            expected_origin=list(origins), require_user_verification=True)
    except _BAD_INPUT as exc:
        raise Refused(_reason(exc)) from None
    credential_id = webauthn.helpers.bytes_to_base64url(verified.credential_id)
    if len(credential_id) > MAX_CREDENTIAL_ID_LENGTH or Passkey.objects.filter(credential_id=credential_id).exists():
        raise Refused("This passkey is registered already.")
    response = credential.get("response") if isinstance(credential, dict) else None
    transports = response.get("transports") if isinstance(response, dict) else None
    return Passkey.objects.create(
        user=user, credential_id=credential_id, public_key=verified.credential_public_key,
        sign_count=verified.sign_count, name=clean_name(name), aaguid=str(verified.aaguid),
        transports=",".join(t for t in (transports if isinstance(transports, list) else [])
                            if isinstance(t, str) and _transport(t))[:200],
        backup_eligible=verified.credential_device_type == structs.CredentialDeviceType.MULTI_DEVICE,
        backed_up=bool(verified.credential_backed_up))


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Chromium/", "Chromium"), ("Safari/", "Safari"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"), ("Mac OS X", "macOS"),
            ("Windows", "Windows"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def default_name(user_agent: str) -> str:
    """A passkey's suggested name from the browser that creates it, e.g. "Chrome on Linux"; the user
    may change it before saving."""
    browser = next((name for token, name in _BROWSERS if token in user_agent), "")
    system = next((name for token, name in _SYSTEMS if token in user_agent), "")
    return clean_name(" on ".join(part for part in (browser, system) if part) or "Passkey")


def clean_name(name: object) -> str:
    """A passkey's name as shown: printable, one line, at most 64 characters."""
    text = " ".join(str(name or "").split())
    text = "".join(c for c in text if c.isprintable())[:MAX_NAME_LENGTH]
    return text or "Passkey"


def credential_id_of(credential: Any) -> str | None:
    """The credential id a sign-in answer names, or None unless it can be one."""
    cid = credential.get("id") if isinstance(credential, dict) else None
    if not isinstance(cid, str) or not 0 < len(cid) <= MAX_CREDENTIAL_ID_LENGTH:
        return None
    return cid


UNKNOWN_OWNER = "unknown passkey"  # what the throttle counts a passkey that is not registered here under


def find(credential: Any) -> Passkey | None:
    """The registered passkey (with its account) a sign-in answer names, not yet checked; None if none."""
    cid = credential_id_of(credential)
    return Passkey.objects.select_related("user").filter(credential_id=cid).first() if cid else None


def authenticate(ceremony: Ceremony, credential: Any, passkey: Passkey | None) -> Used:
    """Check a sign-in answer naming `passkey` (find); on success the passkey's counter, flags and
    last use are updated.

    For a second step the ceremony names the account and the passkey must be one of its own; for a
    sign-in without a name, the passkey names the account and the answer's userHandle must agree.
    """
    if passkey is None or not passkey.user.is_active:
        raise Refused("This passkey is not registered here.")
    if ceremony.user_id is not None and passkey.user_id != ceremony.user_id:
        raise Refused("This passkey belongs to another account.")
    response = credential.get("response") if isinstance(credential, dict) else None
    handle = response.get("userHandle") if isinstance(response, dict) else None
    if handle and handle != webauthn.helpers.bytes_to_base64url(user_handle(passkey.user)):
        raise Refused("This passkey belongs to another account.")
    rp_id, origins = party()
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential, expected_challenge=ceremony.challenge, expected_rp_id=rp_id,
            expected_origin=list(origins), credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=0, require_user_verification=True)
    except _BAD_INPUT as exc:
        raise Refused(_reason(exc)) from None
    seen = verified.new_sign_count
    # The counter must rise when either side has one; the UPDATE is conditional so that two nodes
    # checking the same passkey's uses at once cannot both move it to the same value.
    moved = Passkey.objects.filter(Q(pk=passkey.pk) & _counter_rises(seen)).update(
        sign_count=seen, backed_up=bool(verified.credential_backed_up), last_used=timezone.now())
    if not moved:
        raise CounterWentBack(passkey, seen)
    passkey.sign_count, passkey.backed_up = seen, bool(verified.credential_backed_up)
    return Used(passkey)


def _counter_rises(seen: int) -> Q:
    """Rows whose stored counter allows `seen`: any, while neither side keeps one (both 0); else the
    stored value must be below it."""
    return Q(sign_count__lt=seen) if seen else Q(sign_count=0)


def _reason(exc: Exception) -> str:
    """What a refused answer is told: the library's own words say which check failed (origin, RP ID,
    challenge, signature...) and carry no secret; anything else is just malformed."""
    if isinstance(exc, webauthn_errors.WebAuthnException) and str(exc):
        return f"The passkey's answer was refused: {str(exc)[:200]}"
    return "The passkey's answer is malformed."


def remove(user: Any, passkey_id: int) -> Passkey | None:
    """Delete one of `user`'s passkeys; the row deleted, or None when it is not theirs."""
    passkey = Passkey.objects.filter(user=user, pk=passkey_id).first()
    if passkey is not None:
        passkey.delete()
    return passkey
