"""Create or update the demo accounts with DEMO_PASSWORD; without it, do nothing (no default passwords)."""
from __future__ import annotations

import os

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from loginsvc.accounts.models import User

DEMO_EMAILS = ("demo@example.test", "demo2@example.test")


class Command(BaseCommand):
    help = "Create or update demo@example.test and demo2@example.test with the password in DEMO_PASSWORD."

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
