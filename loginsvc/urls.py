"""Root URLs; /healthz, /readyz and /metrics are answered earlier by HealthMiddleware."""
from django.urls import include, path

urlpatterns = [path("", include("loginsvc.accounts.urls"))]
