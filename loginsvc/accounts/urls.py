"""URLs of accounts."""
from django.urls import path

from loginsvc.accounts import views

urlpatterns = [
    path("", views.home_view, name="home"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("logout/everywhere/", views.logout_everywhere_view, name="logout-everywhere"),
    path("api/session", views.api_session_view, name="api-session"),
    path("api/login", views.api_login_view, name="api-login"),
    path("api/login/mfa", views.api_login_mfa_view, name="api-login-mfa"),
]
