"""`manage.py mfa_reset EMAIL`: take every second factor from an account whose owner lost them all."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from loginsvc.accounts import auth_epoch
from loginsvc.accounts.management.commands.logout_user import account
from loginsvc.mail import notices
from loginsvc.mfa import audit, factors


class Command(BaseCommand):
    help = ("Remove the authenticator app, the passkeys and the recovery codes of the account EMAIL (its owner lost every "
            "second factor), and end every session and token of it on every node: the next sign-in is the "
            "password alone, and the owner sets a new factor up. The owner gets a notice by mail. Check who asks "
            "before you run it.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="the account's email address (any case)")

    def handle(self, *args: object, **options: object) -> None:
        user = account(str(options["email"]))
        with transaction.atomic():  # the notice goes out once, and only if the factors went
            removed = factors.remove_all(user)
            notices.mfa_reset(user)
        # Whoever holds a session or a token may be the one who took the factors: all of them end.
        auth_epoch.sign_out_everywhere(user, by="mfa_reset")
        audit.changed(user.pk, "", "second factors reset by ops")
        self.stdout.write(f"second factors of {user.email} removed (authenticator app: "
                          f"{'yes' if removed.app else 'none'}, passkeys: {removed.passkeys}, unused recovery "
                          f"codes: {removed.recovery_codes}); every session and token ended; the owner is told by mail")
