"""URLs of mail clients."""
from django.urls import path, re_path

from loginsvc.mailclients import views

urlpatterns = [
    path("account/app-passwords/", views.app_passwords_view, name="app-passwords"),
    path("api/app-passwords", views.api_app_passwords_view, name="api-app-passwords"),
    path("api/app-passwords/<str:public_id>", views.api_app_password_view, name="api-app-password"),
    path("api/mail/check", views.mail_check_view, name="mail-check"),
    path("account/app-passwords/<str:public_id>/mobileconfig", views.mobileconfig_view, name="app-password-profile"),
    # Thunderbird asks https://autoconfig.<domain>/mail/… and https://<domain>/.well-known/autoconfig/mail/….
    re_path(r"^(?:\.well-known/autoconfig/)?mail/config-v1\.1\.xml$", views.autoconfig_view, name="autoconfig"),
]
