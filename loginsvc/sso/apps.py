"""App config of sso; connects the logout receivers (sso/logout.py) and the products' form-action origins."""
from django.apps import AppConfig


class SsoConfig(AppConfig):
    name = "loginsvc.sso"
    label = "sso"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from loginsvc.accounts import headers
        from loginsvc.sso import logout, origins  # noqa: F401 - logout connects the signal receivers

        if origins.registered_origins not in headers.FORM_TARGET_SOURCES:
            headers.FORM_TARGET_SOURCES.append(origins.registered_origins)
