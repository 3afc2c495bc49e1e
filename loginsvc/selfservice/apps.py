"""The self-service Django app."""
from django.apps import AppConfig


class SelfServiceConfig(AppConfig):
    name = "loginsvc.selfservice"
    label = "selfservice"
    default_auto_field = "django.db.models.BigAutoField"
