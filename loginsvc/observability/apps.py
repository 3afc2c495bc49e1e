"""App registration for observability."""
from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "loginsvc.observability"
    label = "observability"
