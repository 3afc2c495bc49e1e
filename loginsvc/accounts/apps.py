"""App registration for accounts; connects the session records' receivers (session_registry.py)."""
from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "loginsvc.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from loginsvc.accounts import session_registry  # noqa: F401 - connects its signal receivers
