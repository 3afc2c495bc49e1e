"""Authenticator apps (RFC 6238): enrolment, and codes checked once per account across every node.

The parameters every authenticator app takes: HMAC-SHA-1, 6 digits, 30-second steps (RFC 6238's
defaults; Google Authenticator ignores any other). A code of the step before or after the current
one is accepted too (±1 step, §5.2's network delay and clock drift). The secret is 160 bits (RFC
4226 §4's recommendation), sealed at rest (sealing.py), shown once as a QR code drawn here (segno;
no third-party service sees it) and as text. A device counts only once confirmed with a code it
produced: a scan that went wrong never locks the user out.

Replay (§5.2: "MUST NOT accept the second attempt of the same OTP"): the step a code belongs to is
written with a conditional UPDATE (only if newer than the last accepted step) in the same statement
that decides, so of two nodes given the same code at once, one accepts it.
"""
from __future__ import annotations

import hmac
import time
from urllib.parse import urlsplit

import pyotp
import segno
from django.db import transaction
from django.utils import timezone

from loginsvc import conf
from loginsvc.mfa import sealing
from loginsvc.mfa.models import TOTPDevice

DIGITS, STEP_SECONDS, DRIFT_STEPS = 6, 30, 1


def _context(user_id: int) -> str:
    return f"totp:{user_id}"


def secret_of(device: TOTPDevice) -> str:
    return sealing.unseal(device.sealed_secret, _context(device.user_id)).decode("ascii")


def remember_device(user: object, device: TOTPDevice | None) -> None:
    """Keep `device` (None: no confirmed app) on `user` for confirmed_device: factors.user_with_factors
    reads both in one statement. An attribute of its own, not the ORM's cache of user.totp_device,
    which creating a device fills too and which would then outlive the device's removal."""
    user.loaded_totp_device = device  # type: ignore[attr-defined]


def confirmed_device(user: object) -> TOTPDevice | None:
    """The account's confirmed app: as read with the user when it was (remember_device), else queried."""
    if hasattr(user, "loaded_totp_device"):
        return user.loaded_totp_device
    return TOTPDevice.objects.filter(user_id=getattr(user, "pk", None), confirmed=True).first()


def start_enrolment(user: object) -> TOTPDevice:
    """A new, unconfirmed secret for `user`, replacing an earlier unconfirmed one. A confirmed device is
    left alone (the caller must remove it first, after re-authentication)."""
    secret = pyotp.random_base32(32)  # 32 base32 characters: 160 bits
    sealed = sealing.seal(secret.encode("ascii"), _context(user.pk))  # type: ignore[attr-defined]
    with transaction.atomic():
        device, created = TOTPDevice.objects.select_for_update().get_or_create(
            user=user, defaults={"sealed_secret": sealed})
        if device.confirmed:
            raise ValueError("an authenticator app is already set up")
        if not created:
            device.sealed_secret, device.last_step, device.created = sealed, 0, timezone.now()
            device.save(update_fields=["sealed_secret", "last_step", "created"])
    return device


def enrol_confirmed(user: object, secret: str) -> TOTPDevice:
    """A confirmed device with `secret` (base32) for `user`, replacing any earlier one, its last step reset.
    Only for accounts set up by commands, whose secret someone else already knows (the load-test and demo
    accounts): a person's app gets a random secret and is confirmed with a code (start_enrolment, confirm)."""
    sealed = sealing.seal(secret.encode("ascii"), _context(user.pk))  # type: ignore[attr-defined]
    device, _ = TOTPDevice.objects.update_or_create(user=user, defaults={
        "sealed_secret": sealed, "confirmed": True, "confirmed_at": timezone.now(), "last_step": 0})
    return device


def provisioning_uri(device: TOTPDevice, email: str) -> str:
    """The otpauth:// URI an authenticator app scans: labelled with the service's host and the address."""
    issuer = urlsplit(conf.get("OIDC_ISSUER")).hostname or "login"
    return pyotp.TOTP(secret_of(device), digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=email, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no script, no image from elsewhere: the page's CSP allows it)."""
    return segno.make(uri, error="m").svg_inline(scale=4, border=2, title="Authenticator app set-up code")


def parse_code(text: object) -> str | None:
    """The code typed, spaces removed, or None unless it is exactly six ASCII digits."""
    if not isinstance(text, str):
        return None
    code = text.replace(" ", "")
    return code if len(code) == DIGITS and code.isascii() and code.isdigit() else None


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step within ±1 of `now` whose code is `code`, or None. Every candidate is compared (in
    constant time), so how long this takes does not tell which step matched."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def accept(device: TOTPDevice, code: str, now: float | None = None) -> bool:
    """The code is the device's and its step has not been accepted before (on any node): now it has."""
    step = matching_step(secret_of(device), code, now)
    if step is None:
        return False
    return bool(TOTPDevice.objects.filter(pk=device.pk, last_step__lt=step)
                .update(last_step=step, last_used=timezone.now()))


def confirm(device: TOTPDevice, code: str, now: float | None = None) -> bool:
    """Enrolment's last step: the first code from the app makes the device count."""
    if device.confirmed or not accept(device, code, now):
        return False
    TOTPDevice.objects.filter(pk=device.pk).update(confirmed=True, confirmed_at=timezone.now())
    device.confirmed = True
    return True


def remove(user: object) -> bool:
    """Forget the account's authenticator app (confirmed or not); whether there was one."""
    return bool(TOTPDevice.objects.filter(user_id=getattr(user, "pk", None)).delete()[0])
