"""App registration for accounts."""
from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "loginsvc.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
