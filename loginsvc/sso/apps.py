"""App config of sso; connects the logout receivers (sso/logout.py)."""
from django.apps import AppConfig


class SsoConfig(AppConfig):
    name = "loginsvc.sso"
    label = "sso"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from loginsvc.sso import logout  # noqa: F401 - connects the signal receivers
