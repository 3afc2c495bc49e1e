"""`manage.py register_mail_server --secret-file FILE`: the mail server's confidential client, made or updated."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError, CommandParser
from oauth2_provider.models import Application

from loginsvc import conf
from loginsvc.accounts.management.commands.disable_user import OneLineUsage

MIN_SECRET = 32


class Command(OneLineUsage):
    help = ("Register (or update) the mail server's confidential client, LOGINSVC_MAIL_SERVER_CLIENT (default "
            "dovecot): the one client that may ask POST /api/mail/check and introspect tokens granted the mail "
            "scope. Its secret is read from FILE (first line, at least 32 characters), never from an argument.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--secret-file", required=True, help="a file whose first line is the client's secret")

    def handle(self, *args: object, **options: object) -> None:
        path = Path(str(options["secret_file"]))
        try:
            secret = path.read_text(encoding="utf-8").splitlines()[0].strip() if path.stat().st_size else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"--secret-file: cannot read {path}: {exc.__class__.__name__}", returncode=2) from None
        if len(secret) < MIN_SECRET:
            raise CommandError(f"--secret-file: the secret must be at least {MIN_SECRET} characters", returncode=2)
        client_id = conf.get("MAIL_SERVER_CLIENT")
        client, created = Application.objects.get_or_create(client_id=client_id, defaults={
            "name": "Mail server", "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_CLIENT_CREDENTIALS, "client_secret": secret,
            "hash_client_secret": True})
        if not created:
            client.client_type = Application.CLIENT_CONFIDENTIAL
            client.client_secret, client.hash_client_secret = secret, True
            client.save()
        self.stdout.write(f"{client_id}: {'registered' if created else 'updated'} (the mail server's client)")
