"""Root URLs; /healthz, /readyz and /metrics are answered earlier by HealthMiddleware."""
from django.urls import include, path, re_path

from loginsvc.sso import views as sso_views

urlpatterns = [
    path("", include("loginsvc.accounts.urls")),
    path("", include("loginsvc.mfa.urls")),
    path("", include("loginsvc.selfservice.urls")),
    path("oidc/", include("loginsvc.sso.urls")),
    # The issuer is the router's origin, so discovery also lives at the root (OpenID Connect Discovery §4).
    re_path(r"^\.well-known/openid-configuration$", sso_views.DiscoveryView.as_view(), name="oidc-discovery"),
]
