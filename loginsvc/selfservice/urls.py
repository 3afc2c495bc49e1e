"""URLs of self-service."""
from django.urls import path

from loginsvc.selfservice import session_views, views

urlpatterns = [
    path("account/", views.account_view, name="account"),
    path("account/password/", views.password_view, name="account-password"),
    path("account/email/", views.email_view, name="account-email"),
    path("account/email/undo/", views.email_undo_view, name="account-email-undo"),
    path("account/sessions/", session_views.sessions_view, name="account-sessions"),
    path("api/sessions", session_views.api_sessions_view, name="api-sessions"),
    path("api/sessions/end-others", session_views.api_end_others_view, name="api-sessions-end-others"),
    path("api/sessions/<str:public_id>", session_views.api_session_view, name="api-session-end"),
    path("api/mail-clients/<str:client_id>", session_views.api_mail_client_view, name="api-mail-client-end"),
    path("recover/", views.recover_view, name="recover"),
    path("api/password", views.api_password_view, name="api-password"),
    path("api/recover", views.api_recover_view, name="api-recover"),
    path("api/recover/confirm", views.api_recover_confirm_view, name="api-recover-confirm"),
]
