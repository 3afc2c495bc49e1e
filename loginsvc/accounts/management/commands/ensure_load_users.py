"""`manage.py ensure_load_users --count N`: the load suites' own accounts (loadtests/), with LOADTEST_PASSWORD."""
from __future__ import annotations

import os

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from loginsvc.accounts.models import User

PASSWORD_ENV = "LOADTEST_PASSWORD"
MAX_COUNT = 10_000


def email_of(index: int, prefix: str) -> str:
    """The address of load-test account `index`: reserved .test domain, so it can never be someone's mail."""
    return f"{prefix}-{index:04d}@loadtest.example.test"


class Command(BaseCommand):
    help = (f"Create or update the load-test accounts PREFIX-0000@loadtest.example.test … with the password in "
            f"{PASSWORD_ENV} (never a default, never an argument: it would show in the process list).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=50, help="how many accounts (default 50)")
        parser.add_argument("--prefix", default="loadtest", help="local part before the number (default loadtest)")

    def handle(self, *args: object, **options: object) -> None:
        count, prefix = int(options["count"]), str(options["prefix"])  # type: ignore[call-overload]
        if not 1 <= count <= MAX_COUNT:
            raise CommandError(f"--count: must be between 1 and {MAX_COUNT} (got {count})", returncode=2)
        if not prefix.isascii() or not prefix.replace("-", "").isalnum() or len(prefix) > 40:
            raise CommandError(f"--prefix: letters, digits and '-' only, at most 40 (got {prefix!r})", returncode=2)
        password = os.environ.get(PASSWORD_ENV)
        if not password:
            raise CommandError(f"{PASSWORD_ENV} is not set: no accounts touched", returncode=2)
        try:
            validate_password(password)  # the same rules as for anyone
        except ValidationError as exc:
            raise CommandError(f"{PASSWORD_ENV}: {' '.join(exc.messages)}", returncode=2) from None
        created = updated = 0
        for index in range(count):
            user, is_new = User.objects.get_or_create(email=email_of(index, prefix))
            if is_new or not user.is_active or not user.check_password(password):
                user.set_password(password)
                user.is_active = True
                user.save()
                created += is_new
                updated += not is_new
        self.stdout.write(f"load-test accounts ready: {count} ({created} created, {updated} updated), "
                          f"{email_of(0, prefix)} … {email_of(count - 1, prefix)}")
