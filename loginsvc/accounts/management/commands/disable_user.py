"""`manage.py disable_user EMAIL`: deactivate an account; every session and product sign-in of it ends at once.

Also home of what the account commands share (create_user, enable_user import it): usage errors as one
line and exit status 2, and the switch of is_active with its audit line.
"""
from __future__ import annotations

import logging
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

from loginsvc.accounts.management.commands.logout_user import account

audit = logging.getLogger("loginsvc.audit")  # the lines of accounts/audit.py: user_id, never the email


class OneLineUsage(BaseCommand):
    """A command whose bad arguments (one missing, an unknown option, a bad value) are one line on stderr and
    exit status 2, in place of argparse's usage text; called in-process, a CommandError with returncode 2."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def error(message: str) -> NoReturn:
            line = f"{parser.prog}: {message} (--help shows the usage)"
            if parser.called_from_command_line:
                parser.exit(2, line + "\n")
            raise CommandError(line, returncode=2)

        parser.error = error  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="the account's email address (any case)")


class SetActive(OneLineUsage):
    """Set is_active of the account EMAIL through User.save: deactivating ends all of its sign-ins (sign_ins.py)
    and its sessions for good. Already so: one line, exit status 0, nothing written. An unknown or bad
    address: one line, exit status 1 (logout_user.account)."""

    active: bool
    done: str  # "disabled", "enabled"

    def handle(self, *args: object, **options: object) -> None:
        user = account(str(options["email"]))
        if user.is_active == self.active:
            self.stdout.write(f"{user.email} is already {self.done}: nothing changed")
            return
        user.is_active = self.active
        user.save(update_fields=["is_active"])  # disabling also ends its sessions for good (User.save)
        audit.info(f"account: {self.done} by ops", extra={"user_id": user.pk})
        self.stdout.write(f"{self.done} {user.email}" + ("" if self.active else
                                                        "; every session and product sign-in of it ended"))


class Command(SetActive):
    help = ("Deactivate the account EMAIL: every session and every product sign-in of it ends at once, on every "
            "node, and it cannot sign in until `manage.py enable_user EMAIL`. Already disabled: nothing changes.")
    active, done = False, "disabled"
