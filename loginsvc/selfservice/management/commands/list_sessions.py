"""`manage.py list_sessions EMAIL [--json]`: the account's live sessions, as its owner sees them on the sessions page."""
from __future__ import annotations

import json

from django.core.management.base import CommandParser

from loginsvc.accounts import session_registry
from loginsvc.accounts.management.commands.disable_user import OneLineUsage
from loginsvc.accounts.management.commands.logout_user import account
from loginsvc.selfservice import sessions

COLUMNS = ("id", "browser", "system", "address", "cluster", "first_seen", "last_seen", "products")


class Command(OneLineUsage):
    help = ("List the live sessions of the account EMAIL: id, browser, system, address, cluster, first and last use "
            "(UTC) and the products signed in through each. End them with `manage.py logout_user EMAIL`, or one "
            "at a time in the admin.")

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--json", action="store_true", help='print {"sessions": [...]} as GET /api/sessions does')

    def handle(self, *args: object, **options: object) -> None:
        user = account(str(options["email"]))
        listed = [{k: v for k, v in s.items() if k != "current"}
                  for s in sessions.as_listed(user, session_registry.live(user))]
        if options["json"]:
            self.stdout.write(json.dumps({"sessions": listed}, indent=2))
            return
        if not listed:
            self.stdout.write(f"{user.email}: no live session")
            return
        rows = [[", ".join(s[c]) if c == "products" else str(s[c]) for c in COLUMNS] for s in listed]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
        for row in [list(COLUMNS), *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
