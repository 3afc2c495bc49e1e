"""URLs of second factors: the sign-in's second step and the account page's two-step sign-in."""
from django.urls import path

from loginsvc.mfa import views

urlpatterns = [
    path("login/mfa/", views.second_step_view, name="login-mfa"),
    path("account/mfa/", views.account_view, name="mfa-account"),
    path("account/mfa/app/", views.app_setup_view, name="mfa-app-setup"),
    path("account/mfa/app/remove/", views.app_remove_view, name="mfa-app-remove"),
    path("account/mfa/recovery-codes/", views.recovery_codes_view, name="mfa-recovery-codes"),
]
