"""`manage.py remove_load_users`: take the load suites' accounts and their `loadtest` client away, with everything
that hangs off them (tokens, codes, sign-ins).

The undo of `ensure_load_users` and of the load suites' product (loginsvc/accounts/load_users.py). It works in
every mode, production included: that is where such accounts must never stay. Only addresses exactly of the form
ensure_load_users makes (PREFIX-NNNN@loadtest.example.test) are deleted; a person's account never matches.
Idempotent: a second run finds nothing and says so.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import Q
from oauth2_provider.models import get_access_token_model, get_application_model, get_refresh_token_model

from loginsvc.accounts.load_users import CLIENT_ID, DOMAIN, is_load_account
from loginsvc.accounts.models import User


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class Command(BaseCommand):
    help = (f"Delete the load-test accounts (PREFIX-NNNN@{DOMAIN}) and the {CLIENT_ID!r} client with their "
            "tokens; prints what it removed. Safe to re-run; never touches any other account.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="only print what would be removed")

    def handle(self, *args: object, **options: object) -> None:
        verb = "would remove" if options["dry_run"] else "removed"
        with transaction.atomic():
            candidates = User.objects.filter(email__endswith="@" + DOMAIN).order_by("email")
            matched = [(pk, email) for pk, email in candidates.values_list("pk", "email") if is_load_account(email)]
            users = User.objects.filter(pk__in=[pk for pk, _email in matched])
            client = get_application_model().objects.filter(client_id=CLIENT_ID)
            has_client = client.exists()
            theirs = Q(user__in=users) | Q(application__in=client)
            tokens = (get_access_token_model().objects.filter(theirs).count(),
                      get_refresh_token_model().objects.filter(theirs).count())
            if not options["dry_run"]:
                users.delete()    # their tokens, codes and sign-ins go with them (CASCADE); caches hear of it
                client.delete()   # its product row, tokens and codes too
        if matched:
            first_last = sorted({matched[0][1], matched[-1][1]})
            self.stdout.write(f"{verb} {_plural(len(matched), 'load-test account')} ({' … '.join(first_last)})")
        else:
            self.stdout.write("no load-test accounts")
        self.stdout.write(f"{verb} client {CLIENT_ID!r}" if has_client else f"no {CLIENT_ID!r} client")
        if any(tokens):
            self.stdout.write(f"{verb} with them: {_plural(tokens[0], 'access token')}, "
                              f"{_plural(tokens[1], 'refresh token')}")
