"""App registration for staff."""
from django.apps import AppConfig


class StaffConfig(AppConfig):
    name = "loginsvc.staff"
    label = "staff"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Account administration"
