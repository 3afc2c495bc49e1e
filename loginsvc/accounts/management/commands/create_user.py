"""`manage.py create_user EMAIL [--staff] [--display-name NAME]`: an account made by ops, its password never an
argument (it would show in the process list and the shell history).

The password comes from LOGINSVC_NEW_PASSWORD, or else is asked twice on the terminal; it must pass the
project's validators (AUTH_PASSWORD_VALIDATORS), checked against the new account's address and name.
Every refusal is one line on stderr before anything is written: exit status 2 for bad input, 1 for an
address that already has an account.
"""
from __future__ import annotations

import os
import sys
from getpass import getpass

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import IntegrityError, transaction

from loginsvc.accounts.management.commands.disable_user import OneLineUsage, audit
from loginsvc.accounts.models import User, normalise_email

PASSWORD_ENV = "LOGINSVC_NEW_PASSWORD"


def _checked(field: str, value: str) -> str:
    """`value` as User.`field` takes it (EmailValidator and the length for the email), or a refusal: exit 2."""
    try:
        return User._meta.get_field(field).clean(value, None)
    except ValidationError as exc:
        raise CommandError(f"{value!r}: {' '.join(exc.messages)}", returncode=2) from None


def _password() -> str:
    """LOGINSVC_NEW_PASSWORD, else one typed twice on a terminal; neither, or a mismatch: exit 2."""
    password = os.environ.get(PASSWORD_ENV)
    if password is not None:
        if not password:
            raise CommandError(f"{PASSWORD_ENV} is set but empty: no account created", returncode=2)
        return password
    if not sys.stdin.isatty():
        raise CommandError(f"no password: set {PASSWORD_ENV} or run on a terminal to be asked; no account created",
                           returncode=2)
    try:
        password, again = getpass("Password: "), getpass("Password (again): ")
    except (EOFError, KeyboardInterrupt):
        raise CommandError("no password given: no account created", returncode=2) from None
    if password != again:
        raise CommandError("the two passwords differ: no account created", returncode=2)
    return password


class Command(OneLineUsage):
    help = (f"Create the account EMAIL (any case; stored lower-cased). The password comes from {PASSWORD_ENV}, or is "
            "asked twice on a terminal, never from an argument, and must pass the password rules.")

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--staff", action="store_true", help="may use Django's admin site (not a superuser)")
        parser.add_argument("--display-name", default="", help="the name shown to products (default: none)")

    def handle(self, *args: object, **options: object) -> None:
        email = _checked("email", normalise_email(str(options["email"])))
        user = User(email=email, display_name=_checked("display_name", str(options["display_name"])),
                    is_staff=bool(options["staff"]))
        if User.objects.filter(email=email).exists():  # before the password is asked for
            raise CommandError(f"{email!r} already has an account: nothing changed")
        password = _password()
        try:
            validate_password(password, user)  # similarity to this account's address and name too
        except ValidationError as exc:
            raise CommandError(f"password refused: {' '.join(exc.messages)}", returncode=2) from None
        user.set_password(password)
        try:
            with transaction.atomic():
                user.save(force_insert=True)
        except IntegrityError:  # created meanwhile by someone else
            raise CommandError(f"{email!r} already has an account: nothing changed") from None
        audit.info("account: created by ops", extra={"user_id": user.pk, "staff": user.is_staff})
        self.stdout.write(f"created {email}" + (" (staff)" if user.is_staff else ""))
