"""App registration for mail clients; connects the end of all sign-ins to app passwords (app_passwords.py)."""
from django.apps import AppConfig


class MailClientsConfig(AppConfig):
    name = "loginsvc.mailclients"
    label = "mailclients"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from loginsvc.mailclients import app_passwords, discovery  # noqa: F401 - app_passwords connects its receiver

        checks.register(discovery.check_servers, checks.Tags.security, deploy=True)
