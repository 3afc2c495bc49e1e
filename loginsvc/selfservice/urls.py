"""URLs of self-service."""
from django.urls import path

from loginsvc.selfservice import views

urlpatterns = [
    path("account/", views.account_view, name="account"),
    path("account/password/", views.password_view, name="account-password"),
    path("account/email/", views.email_view, name="account-email"),
    path("account/email/undo/", views.email_undo_view, name="account-email-undo"),
    path("recover/", views.recover_view, name="recover"),
    path("api/password", views.api_password_view, name="api-password"),
    path("api/recover", views.api_recover_view, name="api-recover"),
    path("api/recover/confirm", views.api_recover_confirm_view, name="api-recover-confirm"),
]
