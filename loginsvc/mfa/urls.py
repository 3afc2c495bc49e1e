"""URLs of second factors: the sign-in's second step, passkeys, and the account page's two-step sign-in."""
from django.urls import path

from loginsvc.mfa import passkey_views, views

urlpatterns = [
    path("login/mfa/", views.second_step_view, name="login-mfa"),
    path("account/mfa/", views.account_view, name="mfa-account"),
    path("account/mfa/app/", views.app_setup_view, name="mfa-app-setup"),
    path("account/mfa/app/remove/", views.app_remove_view, name="mfa-app-remove"),
    path("account/mfa/recovery-codes/", views.recovery_codes_view, name="mfa-recovery-codes"),
    path("account/mfa/passkeys/<int:passkey_id>/remove/", passkey_views.remove_view, name="mfa-passkey-remove"),
    path("api/passkey/options", passkey_views.options_view, name="api-passkey-options"),
    path("api/passkey/register", passkey_views.register_view, name="api-passkey-register"),
    path("api/passkey/sign-in", passkey_views.sign_in_view, name="api-passkey-sign-in"),
    path("scripts/passkeys.js", passkey_views.script_view, name="passkeys-script"),
]
