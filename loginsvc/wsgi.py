"""WSGI entry point for gunicorn; a configuration error stops the process with one clear line."""
import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loginsvc.settings")

try:
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    print(f"configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
