"""`manage.py show_oidc_keys`: the signing keys of the ring as this configuration reads it (no secrets)."""
from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from loginsvc.sso import keys


class Command(BaseCommand):
    help = "List the keys of the OpenID Connect key ring: kid, state (signing, next, retired), active_after."

    def handle(self, *args: object, **options: object) -> None:
        try:
            ring = keys.read_ring()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc), returncode=2) from None
        for line in keys.describe(ring):
            self.stdout.write(line)
