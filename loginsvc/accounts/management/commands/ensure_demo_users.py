"""Create or update the demo accounts with DEMO_PASSWORD; without it, do nothing (no default passwords).

demo2@example.test also gets an authenticator app (RFC 6238: SHA-1, 6 digits, 30 s), so a person trying
`make up` can walk through a sign-in with a second factor and the demo admin portal, which requires one.
Its otpauth:// URI is printed and kept in <var>/demo2-totp.txt (owner-only): the secret stays the same
across restarts as long as that file and the device agree; when either is missing or they differ, a
new secret is made and the file rewritten.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyotp
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from loginsvc import conf
from loginsvc.accounts.models import User
from loginsvc.mfa import sealing, totp
from sharedlib.files import replace_private

DEMO_EMAILS = ("demo@example.test", "demo2@example.test")
TOTP_EMAIL = "demo2@example.test"
TOTP_FILE = "demo2-totp.txt"


def _secret_in(path: Path) -> str | None:
    """The secret of the otpauth:// URI in `path`, or None (no file, or not such a URI)."""
    try:
        return pyotp.parse_uri(path.read_text(encoding="utf-8").strip()).secret
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def ensure_demo_app(user: User) -> tuple[str, Path]:
    """(otpauth URI, file) of demo2's authenticator app: the device and file kept when they hold the same
    secret, else a new secret for both (an unreadable device, from another MFA key, counts as different)."""
    path = conf.var_dir() / TOTP_FILE
    device = totp.confirmed_device(user)
    try:
        current = totp.secret_of(device) if device is not None else None
    except sealing.Unreadable:
        current = None
    if current is None or current != _secret_in(path):
        device = totp.enrol_confirmed(user, pyotp.random_base32(32))  # 160 bits, as start_enrolment's
    uri = totp.provisioning_uri(device, user.email)
    if not path.exists() or path.read_text(encoding="utf-8").strip() != uri:  # e.g. the issuer's host changed
        replace_private(path, uri + "\n")
    path.chmod(0o600)
    return uri, path


class Command(BaseCommand):
    help = ("Create or update demo@example.test and demo2@example.test with the password in DEMO_PASSWORD; "
            f"demo2 gets an authenticator app, its otpauth:// URI in <var>/{TOTP_FILE}.")

    def handle(self, *args: object, **options: object) -> None:
        password = os.environ.get("DEMO_PASSWORD")
        if not password:
            self.stdout.write("DEMO_PASSWORD is not set: no demo accounts touched.")
            return
        try:
            validate_password(password)  # the same rules as for anyone (12 characters at least)
        except ValidationError as exc:
            raise CommandError(f"DEMO_PASSWORD: {' '.join(exc.messages)}") from None
        for email in DEMO_EMAILS:
            user, created = User.objects.get_or_create(email=email)
            if created or not user.check_password(password):
                user.set_password(password)
                user.is_active = True
                user.save()
            self.stdout.write(f"demo account ready: {email}")
            if email == TOTP_EMAIL:
                uri, path = ensure_demo_app(user)
                self.stdout.write(f"  authenticator app (add it to yours; sign-ins ask for its code): {uri}\n"
                                  f"  the same URI is in {path} (owner-only)")
