"""`manage.py rotate_oidc_key`: add a signing key to the ring file and drop the keys no longer published."""
from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from loginsvc import conf
from loginsvc.sso import keys


class Command(BaseCommand):
    help = ("Add a new signing key to LOGINSVC_OIDC_KEY_FILE (or var/oidc-keys.json): published in the JWKS at "
            "once, signing after the publish delay; the old key stays published until its tokens expire. Every "
            "node picks the file up within LOGINSVC_OIDC_KEY_RELOAD_SECONDS.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--publish-seconds", type=int, default=None, metavar="N",
                            help="how long the new key is only published before it signs "
                                 "(default: LOGINSVC_OIDC_KEY_PUBLISH_SECONDS)")

    def handle(self, *args: object, **options: object) -> None:
        """A ring that cannot be rotated (from the environment, unreadable, bad) is one line on stderr, exit 2."""
        publish = options["publish_seconds"]
        publish = conf.get("OIDC_KEY_PUBLISH_SECONDS") if publish is None else publish
        if not isinstance(publish, int) or publish < 0:
            raise CommandError("--publish-seconds: must be zero or a positive integer", returncode=2)
        try:
            ring, created = keys.rotate_file(publish)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc), returncode=2) from None
        if created:
            self.stdout.write(f"created {keys.key_file()}: a new ring with one key, signing at once")
            return self._list(ring)
        self.stdout.write(f"rotated {keys.key_file()}: new key published now, signing in {publish} s")
        self._list(ring)
        safe = conf.get("OIDC_KEY_RELOAD_SECONDS") + max(1, conf.get("OIDC_KEY_PUBLISH_SECONDS") // 2)
        if publish < safe:
            self.stderr.write(f"warning: {publish} s is less than the reload interval plus the JWKS cache time "
                              f"({safe} s): a product may see a token of the new key before its JWKS lists it")

    def _list(self, ring: keys.KeyRing) -> None:
        for line in keys.describe(ring):
            self.stdout.write(line)
