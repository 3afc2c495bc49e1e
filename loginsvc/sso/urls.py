"""URLs of sso: the provider under /oidc/ (django-oauth-toolkit's URL names, which it reverses itself)."""
from django.urls import path, re_path
from oauth2_provider import views as toolkit

from loginsvc.sso import views

app_name = "oauth2_provider"

urlpatterns = [
    path("authorize/", views.AuthorizationView.as_view(), name="authorize"),
    path("token/", views.TokenView.as_view(), name="token"),
    path("revoke/", views.RevokeView.as_view(), name="revoke-token"),
    path("introspect/", views.introspect_view, name="introspect"),
    path("userinfo/", toolkit.UserInfoView.as_view(), name="user-info"),
    path("jwks/", views.jwks_view, name="jwks-info"),
    path("logout/", views.LogoutView.as_view(), name="rp-initiated-logout"),
    re_path(r"^\.well-known/openid-configuration$", views.DiscoveryView.as_view(), name="oidc-connect-discovery-info"),
]
