"""App registration for observability."""
from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "loginsvc.observability"
    label = "observability"

    def ready(self) -> None:
        from loginsvc.observability.logs import install_record_factory

        install_record_factory()
