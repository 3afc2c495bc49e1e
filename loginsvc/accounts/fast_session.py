"""GET /api/session without Django's request machinery, for the one case that is both hot and plain.

Why: products' back ends ask "who is signed in?" on nearly every page view. Through Django the
answer cost ~1.1 ms of one worker (772-908 req/s; docs/benchmarks.md), of which ~600 us were
WSGIRequest, the ten middlewares, URL resolving and JsonResponse, spread thinly. This module is a
WSGI wrapper (loginsvc/wsgi.py) that answers the plain case itself and hands everything else to
the full Django app, which stays the authority.

Answered here: GET or HEAD of exactly /api/session, no query string, a well-formed CSRF cookie
(else the view mints one), and either no session cookie (anonymous) or a session that
- is in Redis (a miss means a database read and a Redis refill: Django's job),
- needs neither a logout nor an idle-deadline write (accounts.sessions.due),
- names our CachedModelBackend and a user this process has cached and nobody has changed since
  (auth-epoch counters in Redis, read in the same round trip as the session; else a database query),
- carries the user's current session-auth hash (compared in constant time; a mismatch means
  SECRET_KEY_FALLBACKS or a logout: Django's job).
In that case Django writes nothing and answers 200 with a fixed set of headers, and so does this.

How it stays identical, sharing code rather than copying it:
- request phase: the forwarded headers of an untrusted peer dropped (client_ip, as the first
  middleware does), Django's own WSGIRequest (cookies, Host validation, is_secure) and the
  process_request of the same SecurityMiddleware, CommonMiddleware (loginsvc/fast_path.py, shared
  with the SSO fast path) and CsrfViewMiddleware;
- session: SessionStore(key).cache_key read through the session cache's django-redis client
  (same key, same serializer as the cached_db engine);
- auth: django.contrib.auth.get_user's checks, with backends.cached_user;
- body: views.session_payload encoded as JsonResponse does;
- headers: harvested at start-up by running the response phase of the configured middlewares
  on this view's JsonResponse (one template for http, one for https), plus X-Served-By and
  X-Request-ID from observability's helpers, which also record the same histogram and access log
  (fast_path.FastPath.respond).
It mirrors one middleware chain (MIDDLEWARE below); other settings turn it off (unsupported()).
tests/test_session_fast_path.py compares status, body and every header of both paths.

Not done here: the request_started/request_finished signals (database connection housekeeping);
this path never touches the database. LOGINSVC_SESSION_FAST_PATH=0 turns it off.
"""
from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterable
from importlib import import_module
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.core.handlers.wsgi import WSGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import resolve
from django.utils.crypto import constant_time_compare
from django_redis.cache import RedisCache
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from loginsvc import conf
from loginsvc.accounts import auth_epoch, backends, sessions, views
from loginsvc.accounts.headers import ContentSecurityPolicyMiddleware
from loginsvc.fast_path import Answer, FastPath
from loginsvc.health.middleware import ROUTES as HEALTH_ROUTES
from loginsvc.observability.metrics import SESSION_FAST_PATH

logger = logging.getLogger(__name__)

PATH = "/api/session"
# The chain this module mirrors, in order. Any other MIDDLEWARE turns the fast path off: it
# cannot know what another middleware would do. (A test fails too, so that someone looks here.)
MIDDLEWARE = (
    "loginsvc.accounts.client_ip.ForwardedHeadersMiddleware",
    "loginsvc.observability.middleware.RequestContextMiddleware",
    "loginsvc.health.middleware.HealthMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "loginsvc.accounts.sessions.SessionLifetimeMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "loginsvc.accounts.headers.ContentSecurityPolicyMiddleware",
)
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
BACKEND = f"{backends.CachedModelBackend.__module__}.{backends.CachedModelBackend.__qualname__}"
# After Redis fails once, requests go straight to Django for this long: its own Redis attempt
# is all a request should wait for while Redis is down (250 ms connect timeouts).
REDIS_BACKOFF_SECONDS = 1.0
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
SESSION_USERS_MAX = 100_000
# Values of loginsvc_session_fast_path_total{result}: "served", or why Django answered.
RESULTS = (
    "served",
    "request",      # HTTPS redirect, refused Host or user agent: Django answers 301/400/403
    "csrf",         # no or malformed CSRF cookie: the view sets one
    "session",      # session cookie without a session in Redis (or unusable): Django reads the database
    "redis_error",  # Redis failed on this request
    "redis_down",   # Redis failed within REDIS_BACKOFF_SECONDS
    "lifetime",     # absolute lifetime over (logout) or idle deadline due a write
    "user",         # no user in the session, another backend, or the user is not cached here (or changed)
    "auth_hash",    # session-auth hash missing or not the user's current one
    "error",        # a bug here; logged, and Django answers
)


def _unused(request: HttpRequest) -> HttpResponse:
    raise AssertionError("only the middlewares' process_request/process_response are called")


def unsupported() -> str | None:
    """Why this module cannot promise Django's answer under the current settings, or None."""
    if tuple(settings.MIDDLEWARE) != MIDDLEWARE:
        return "MIDDLEWARE is not the chain accounts/fast_session.py mirrors"
    if settings.SESSION_ENGINE != SESSION_ENGINE or settings.SESSION_SAVE_EVERY_REQUEST:
        return "sessions are not cached_db sessions saved only when modified"
    if settings.CSRF_USE_SESSIONS:
        return "CSRF_USE_SESSIONS is on"
    if not isinstance(caches[settings.SESSION_CACHE_ALIAS], RedisCache):
        return "the session cache is not django-redis"
    if BACKEND not in settings.AUTHENTICATION_BACKENDS:
        return f"{BACKEND} is not an authentication backend"
    if PATH in HEALTH_ROUTES or resolve(PATH).func is not views.api_session_view:
        return f"{PATH} is not routed to views.api_session_view"
    return None


def _probe_request(secure: bool) -> WSGIRequest:
    """A request as the response phase of the chain sees it: session read (Vary), nothing modified."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET", "PATH_INFO": PATH, "SERVER_NAME": "fast-path-probe",
        "SERVER_PORT": "443" if secure else "80", "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "https" if secure else "http",
    }
    if secure and settings.SECURE_PROXY_SSL_HEADER:
        header, value = settings.SECURE_PROXY_SSL_HEADER
        environ[header] = value
    request = WSGIRequest(environ)
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(None)
    request.session.get(sessions.AUTH_TIME)  # SessionLifetimeMiddleware reads every session
    if request.is_secure() is not secure:
        raise RuntimeError("cannot build a probe request with is_secure() == %s" % secure)
    return request


def header_template(secure: bool) -> tuple[list[tuple[str, str]], int, str]:
    """The headers Django's response phase gives this view's 200 answer, where Content-Length is
    among them, and the body's charset. Runs the configured middlewares' own code, innermost first."""
    request = _probe_request(secure)
    response = views.no_store(JsonResponse({}))
    response = ContentSecurityPolicyMiddleware(lambda _request: response)(request)
    response = XFrameOptionsMiddleware(_unused).process_response(request, response)
    # SessionLifetimeMiddleware and AuthenticationMiddleware do nothing on the way out.
    response = CsrfViewMiddleware(_unused).process_response(request, response)
    response = CommonMiddleware(_unused).process_response(request, response)
    response = SessionMiddleware(_unused).process_response(request, response)
    response = SecurityMiddleware(_unused).process_response(request, response)
    # HealthMiddleware does not answer this path; RequestContextMiddleware's headers are per request.
    headers = list(response.items())
    if response.cookies or response.status_code != 200:
        raise RuntimeError("the probe answer sets cookies or is not a 200")
    return headers, [name for name, _ in headers].index("Content-Length"), response.charset


class FastSessionApp(FastPath):
    """The WSGI application: the fast path for plain GET/HEAD /api/session, Django for the rest."""

    def __init__(self, django_app: WSGIApplication) -> None:
        super().__init__(django_app, logger, "session fast path", SESSION_FAST_PATH)
        self.csrf = CsrfViewMiddleware(_unused)
        self.templates = {secure: header_template(secure) for secure in (False, True)}
        self.view = resolve(PATH).url_name or "unmatched"
        self.session_store = import_module(settings.SESSION_ENGINE).SessionStore
        self.pk_to_python = get_user_model()._meta.pk.to_python
        self.redis_retry_at = 0.0
        # session key -> the user id it held last time, so that the session read can fetch that
        # user's auth-epoch counters in the same Redis round trip (checked against the session).
        self.session_users: dict[str, str] = {}
        self.pipelined = settings.SESSION_CACHE_ALIAS == "default"  # auth_epoch's counters live there

    @property
    def django_app(self) -> WSGIApplication:
        """The full Django application behind it (FastPath's `inner`)."""
        return self.inner

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") not in ("GET", "HEAD")
                or environ.get("QUERY_STRING")):
            return self.inner(environ, start_response)
        return self.respond(environ, start_response, self.view, lambda: self._attempt(environ))

    def _attempt(self, environ: WSGIEnvironment) -> Answer | str:
        try:
            return self.answer(environ)
        except Exception:  # noqa: BLE001 - nothing was sent or written yet: Django answers
            self.report_error()
            return "error"

    def answer(self, environ: WSGIEnvironment) -> Answer | str:
        """Headers and body of Django's answer if it is a plain 200, else the RESULTS reason it is not."""
        request = self.django_request(environ)  # HTTPS redirect, PREPEND_WWW, bad Host or agent: None
        if request is None:
            return "request"
        cookies = request.COOKIES
        if settings.CSRF_COOKIE_NAME not in cookies:
            return "csrf"
        self.csrf.process_request(request)
        if request.META.get("CSRF_COOKIE_NEEDS_UPDATE"):
            return "csrf"
        session_key = cookies.get(settings.SESSION_COOKIE_NAME)
        if session_key is None:
            payload = views.session_payload(AnonymousUser(), {})
        else:
            payload = self.signed_in(session_key)
            if isinstance(payload, str):
                return payload
        headers, length_at, charset = self.templates[request.is_secure()]
        body = json.dumps(payload, cls=DjangoJSONEncoder).encode(charset)  # as JsonResponse does
        headers = headers.copy()
        headers[length_at] = ("Content-Length", str(len(body)))
        return headers, body

    def signed_in(self, session_key: str) -> dict[str, Any] | str:
        """views.session_payload for this session cookie, or the RESULTS reason Django must answer."""
        if time.monotonic() < self.redis_retry_at:
            return "redis_down"
        store = self.session_store(session_key)
        if store.session_key is None:  # malformed: Django starts an empty session, deletes the cookie
            return "session"
        guess = self.session_users.get(session_key)
        try:
            data, counters = self.read_session(store.cache_key, guess)
        except ConnectionInterrupted:
            self.redis_retry_at = time.monotonic() + REDIS_BACKOFF_SECONDS
            return "redis_error"
        except Exception:  # noqa: BLE001 - cached_db treats any cache error as a miss
            return "session"
        if type(data) is not dict or not data:
            return "session"
        if sessions.due(data, int(time.time())) is not None:
            return "lifetime"
        # django.contrib.auth.get_user, with the user from this process's cache only.
        try:
            user_id = self.pk_to_python(data[SESSION_KEY])
            backend_path = data[BACKEND_SESSION_KEY]
        except (KeyError, ValidationError):
            return "user"
        if backend_path != BACKEND or backend_path not in settings.AUTHENTICATION_BACKENDS:
            return "user"
        user_id = str(user_id)
        if user_id != guess:
            counters = None  # cached_user reads this user's own counters
            if len(self.session_users) >= SESSION_USERS_MAX:
                self.session_users.clear()
            self.session_users[session_key] = user_id
        user = backends.cached_user(user_id, counters=counters)
        if user is None:
            return "user"
        session_hash = data.get(HASH_SESSION_KEY)
        if not session_hash or not constant_time_compare(session_hash, user.get_session_auth_hash()):
            return "auth_hash"
        return views.session_payload(user, data)

    def read_session(self, cache_key: str, guess: str | None) -> tuple[Any, auth_epoch.Stamp | None]:
        """cached_db's own read (cache.get), one layer down so that a Redis failure is told apart; and,
        in the same round trip, the auth-epoch counters of `guess`, the user this session had before.

        Both from the primary (write=True), as auth_epoch reads and writes counters: a lagging
        replica could miss a sign-out."""
        cache_client = caches[settings.SESSION_CACHE_ALIAS].client
        if guess is None or not self.pipelined:
            return cache_client.get(cache_key), None
        redis = cache_client.get_client(write=True)
        pipe = redis.pipeline(transaction=False)
        pipe.get(cache_client.make_key(cache_key)).mget(auth_epoch.keys(guess))
        try:
            raw, counters = pipe.execute()
        except REDIS_ERRORS as exc:
            raise ConnectionInterrupted(connection=redis) from exc
        return (None if raw is None else cache_client.decode(raw)), (counters[0], counters[1])


def wrap(django_app: WSGIApplication) -> WSGIApplication:
    """loginsvc/wsgi.py's application: the fast path in front of Django, unless off or unsupported."""
    if not conf.get("SESSION_FAST_PATH"):
        return django_app
    try:
        reason = unsupported()
        if reason is None:
            return FastSessionApp(django_app)
    except Exception:  # noqa: BLE001 - e.g. a Django upgrade the harvest does not know: serve anyway
        logger.exception("session fast path off: it could not be set up")
        return django_app
    logger.warning("session fast path off: %s", reason)
    return django_app
