"""The mail Django app."""
from django.apps import AppConfig


class MailConfig(AppConfig):
    name = "loginsvc.mail"
    label = "mail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from loginsvc.mail import smtp

        checks.register(smtp.check_configured, checks.Tags.security, deploy=True)
