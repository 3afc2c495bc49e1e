"""`manage.py ensure_load_users --count N`: the load suites' own accounts (loadtests/), with LOADTEST_PASSWORD.

Refused in production: N active accounts sharing one password are a door nobody watches
(loginsvc/accounts/load_users.py). `manage.py remove_load_users` takes them away again.

`--mfa M`: the first M accounts also get a confirmed authenticator app whose secret is derived from the
password and the address (load_users.totp_secret), so the load suites' MFA journey computes its codes
without a file of secrets. Each run re-enrols them with the last accepted step reset: a load run that
starts within the 30-s step of the previous one's last sign-in may use that step's code again (only the
load suites know these secrets). Accounts past M have no authenticator app (one left from an earlier
run with a larger M is removed), so the password journeys never meet a second step.
"""
from __future__ import annotations

import os

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from loginsvc.accounts.load_users import (DEFAULT_PREFIX, DOMAIN, email_of, prefix_problem, refused_in_production,
                                          totp_secret)
from loginsvc.accounts.models import User
from loginsvc.mfa import totp

PASSWORD_ENV = "LOADTEST_PASSWORD"
MAX_COUNT = 10_000


class Command(BaseCommand):
    help = (f"Create or update the load-test accounts PREFIX-0000@{DOMAIN} … with the password in "
            f"{PASSWORD_ENV} (never a default, never an argument: it would show in the process list). "
            "Refused in production (LOGINSVC_MODE=production).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=50, help="how many accounts (default 50)")
        parser.add_argument("--prefix", default=DEFAULT_PREFIX,
                            help=f"local part before the number (default {DEFAULT_PREFIX})")
        parser.add_argument("--mfa", type=int, default=0,
                            help="the first N accounts get an authenticator app with a secret derived from the "
                                 "password and the address; the others none (default 0)")

    def handle(self, *args: object, **options: object) -> None:
        """Every refusal is one line and exit status 2, before any account is touched."""
        if settings.PRODUCTION:
            raise CommandError(refused_in_production("ensure_load_users"), returncode=2)
        count, prefix = int(options["count"]), str(options["prefix"])  # type: ignore[call-overload]
        if not 1 <= count <= MAX_COUNT:
            raise CommandError(f"--count: must be between 1 and {MAX_COUNT} (got {count})", returncode=2)
        mfa = int(options["mfa"])  # type: ignore[call-overload]
        if not 0 <= mfa <= count:
            raise CommandError(f"--mfa: must be between 0 and --count ({count}) (got {mfa})", returncode=2)
        problem = prefix_problem(prefix)
        if problem:
            raise CommandError(f"--prefix: {problem}", returncode=2)
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
            if index < mfa:
                totp.enrol_confirmed(user, totp_secret(password, user.email))
            else:
                totp.remove(user)
        self.stdout.write(f"load-test accounts ready: {count} ({created} created, {updated} updated), "
                          f"{email_of(0, prefix)} … {email_of(count - 1, prefix)}; "
                          f"{mfa} with an authenticator app")
