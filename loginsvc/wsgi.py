"""WSGI entry point for gunicorn; a configuration error stops the process with one clear line.

The application is Django behind the GET /api/session fast path (accounts/fast_session.py),
which answers the plain logged-in case itself and hands every other request to Django; in front
of both, the fast path for products' plain userinfo and introspection calls (sso/fast_token.py).
Both mirror the middleware chain declared in loginsvc/middleware_chain.py and turn themselves off
under any other.
Outermost, only when LOGINSVC_TEST_DELAY names this node or its cluster (tests only): a delay of
every answer but the probes' (loginsvc/delay.py).
"""
import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loginsvc.settings")

try:
    from django.core.wsgi import get_wsgi_application

    django_application = get_wsgi_application()
except ImproperlyConfigured as exc:
    print(f"configuration error: {exc}", file=sys.stderr)
    sys.exit(2)

from loginsvc import delay  # noqa: E402 - needs the settings loaded above
from loginsvc.accounts import fast_session  # noqa: E402
from loginsvc.sso import fast_token  # noqa: E402

application = delay.wrap(fast_token.wrap(fast_session.wrap(django_application)))
