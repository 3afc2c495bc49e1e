"""App registration for health."""
from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "loginsvc.health"
    label = "health"
