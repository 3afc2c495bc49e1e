"""The second factors' Django app."""
from django.apps import AppConfig


class MfaConfig(AppConfig):
    name = "loginsvc.mfa"
    label = "mfa"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from loginsvc.mfa import sealing

        checks.register(sealing.check_key, checks.Tags.security)
