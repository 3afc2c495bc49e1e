"""URLs of sso: the provider under /oidc/ (django-oauth-toolkit's URL names, which it reverses itself).

Every endpoint refuses a parameter holding NUL before any lookup (views.refuse_nul); userinfo's
answer is personal data, so it is never stored by a cache (RFC 6750 §5.3's spirit, OIDC Core §5.3.2)."""
from django.urls import path, re_path
from django.views.decorators.cache import never_cache
from oauth2_provider import views as toolkit

from loginsvc.sso import device_views, rp_logout, views
from loginsvc.sso.views import refuse_nul

app_name = "oauth2_provider"

urlpatterns = [
    path("authorize/", refuse_nul(views.AuthorizationView.as_view()), name="authorize"),
    path("token/", refuse_nul(views.TokenView.as_view()), name="token"),
    path("revoke/", refuse_nul(views.RevokeView.as_view()), name="revoke-token"),
    path("introspect/", refuse_nul(views.introspect_view), name="introspect"),
    # RFC 8628 §3.1: a mail client without a browser asks here; its owner answers at /device (root URLs).
    path("device-authorization/", refuse_nul(device_views.DeviceAuthorizationView.as_view()),
         name="device-authorization"),
    path("userinfo/", refuse_nul(never_cache(toolkit.UserInfoView.as_view())), name="user-info"),
    path("jwks/", views.jwks_view, name="jwks-info"),
    path("logout/", refuse_nul(rp_logout.LogoutView.as_view()), name="rp-initiated-logout"),
    re_path(r"^\.well-known/openid-configuration$", views.DiscoveryView.as_view(), name="oidc-connect-discovery-info"),
]
