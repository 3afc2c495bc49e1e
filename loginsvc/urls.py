"""Root URLs; /healthz, /readyz and /metrics are answered earlier by HealthMiddleware."""
from pathlib import Path

import django.contrib.admin
from django.conf import settings
from django.urls import include, path, re_path
from django.views.static import serve

from loginsvc import conf

from loginsvc.sso import device_views
from loginsvc.sso import views as sso_views

urlpatterns = [
    path("", include("loginsvc.accounts.urls")),
    path("", include("loginsvc.mfa.urls")),
    path("", include("loginsvc.selfservice.urls")),
    path("", include("loginsvc.mailclients.urls")),
    path("oidc/", include("loginsvc.sso.urls")),
    # RFC 8628 §3.3: short to type from a device's screen.
    path("device", device_views.device_view, name="device"),
    # The issuer is the router's origin, so discovery also lives at the root (OpenID Connect Discovery §4).
    re_path(r"^\.well-known/openid-configuration$", sso_views.DiscoveryView.as_view(), name="oidc-discovery"),
]


def admin_enabled() -> bool:
    """LOGINSVC_ADMIN_ENABLED, or by default on except in production mode."""
    enabled = conf.get("ADMIN_ENABLED")
    return (not settings.PRODUCTION) if enabled is None else enabled


if admin_enabled():
    from loginsvc.staff import admin as _registered  # noqa: F401 - registers the accounts on the site
    from loginsvc.staff.site import site

    # The admin's few static files, read from Django's package (no collectstatic step, no other server).
    ADMIN_STATIC = Path(django.contrib.admin.__file__).parent / "static" / "admin"
    urlpatterns += [
        path("admin/", site.urls),
        re_path(r"^static/admin/(?P<path>.+)$", serve, {"document_root": ADMIN_STATIC}),
    ]
