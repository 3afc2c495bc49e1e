"""`manage.py sync_products FILE`: register the products of a TOML or JSON file (loginsvc/sso/products.py)."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from loginsvc.sso import products


class Command(BaseCommand):
    help = ("Create or update the OAuth clients (products) listed in FILE (.toml or .json); re-running an "
            "unchanged file changes nothing. Client secrets come from secret_env or secret_file, never the file. "
            "A public product cannot be first-party; the load suites' 'loadtest' product is refused in production.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the product file: [[product]] tables (.toml) or {\"product\": [...]} (.json)")
        parser.add_argument("--prune", action="store_true",
                            help="also delete registered products that the file does not list (default: keep them)")

    def handle(self, *args: object, **options: object) -> None:
        """A bad file is one line on stderr and exit status 2, with nothing written."""
        try:
            specs = products.load_file(Path(str(options["file"])))
        except products.ProductFileError as exc:
            raise CommandError(str(exc), returncode=2) from None
        result = products.sync(specs, prune=bool(options["prune"]))
        for line in result.lines:
            self.stdout.write(line)
        for client_id in result.pruned:
            self.stdout.write(f"{client_id}: deleted (not in the file, --prune)")
        if result.kept:
            self.stdout.write(f"kept, not in the file: {', '.join(result.kept)} (--prune deletes them)")
