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
- request phase: the one loginsvc/fast_path.py derives from the declared chain
  (loginsvc/middleware_chain.py; shared with the SSO fast path): the forwarded headers of an
  untrusted peer dropped (client_ip, as the first middleware does), Django's own WSGIRequest
  (cookies, Host validation, is_secure), the process_request of SecurityMiddleware and
  CommonMiddleware; then each entry acting on cookies as MIRRORED says (CsrfViewMiddleware's own
  process_request among them);
- session: SessionStore(key).cache_key read through the session cache's django-redis client
  (same key, same serializer as the cached_db engine);
- auth: django.contrib.auth.get_user's checks, with backends.cached_user;
- body: views.session_payload encoded as JsonResponse does;
- headers: fast_path.harvest at start-up, the chain's response phase run on this view's
  JsonResponse (one template for http, one for https), plus X-Served-By and X-Request-ID from
  observability's helpers, which also record the same histogram and access log
  (fast_path.FastPath.respond).
It mirrors the declared chain only: another MIDDLEWARE, entries acting on cookies other than
MIRRORED, and the other settings unsupported() checks turn it off.
tests/test_session_fast_path.py compares status, body and every header of both paths.

Not done here: the request_started/request_finished signals (database connection housekeeping);
this path never touches the database. LOGINSVC_SESSION_FAST_PATH=0 turns it off.
"""
from __future__ import annotations

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
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.http import JsonResponse
from django.urls import resolve
from django.utils.crypto import constant_time_compare
from django_redis.cache import RedisCache
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from loginsvc import conf, middleware_chain
from loginsvc.accounts import auth_epoch, backends, sessions, views
from loginsvc.fast_path import Answer, FastPath, harvest, middleware, unsupported_chain
from loginsvc.middleware_chain import Request
from loginsvc.observability.metrics import SESSION_FAST_PATH

logger = logging.getLogger(__name__)

PATH = "/api/session"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"
# How this module stands in for each entry of the chain that acts on cookies (Request.COOKIES); a chain
# with other such entries turns the fast path off: it cannot know what another one would do.
MIRRORED = {
    "django.contrib.sessions.middleware.SessionMiddleware": "the session read from Redis (read_session)",
    CSRF: "its own process_request (answer)",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "get_user's checks (signed_in)",
    "loginsvc.accounts.sessions.SessionLifetimeMiddleware": "sessions.due (signed_in)",
}
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


def unsupported() -> str | None:
    """Why this module cannot promise Django's answer under the current settings, or None."""
    reason = unsupported_chain((PATH,))
    if reason is not None:
        return reason
    if {entry.path for entry in middleware_chain.CHAIN if entry.request is Request.COOKIES} != MIRRORED.keys():
        return "the chain's middlewares acting on cookies are not the ones accounts/fast_session.py mirrors"
    if settings.SESSION_ENGINE != SESSION_ENGINE or settings.SESSION_SAVE_EVERY_REQUEST:
        return "sessions are not cached_db sessions saved only when modified"
    if settings.CSRF_USE_SESSIONS:
        return "CSRF_USE_SESSIONS is on"
    if not isinstance(caches[settings.SESSION_CACHE_ALIAS], RedisCache):
        return "the session cache is not django-redis"
    if BACKEND not in settings.AUTHENTICATION_BACKENDS:
        return f"{BACKEND} is not an authentication backend"
    if resolve(PATH).func is not views.api_session_view:
        return f"{PATH} is not routed to views.api_session_view"
    return None


class FastSessionApp(FastPath):
    """The WSGI application: the fast path for plain GET/HEAD /api/session, Django for the rest."""

    def __init__(self, django_app: WSGIApplication) -> None:
        super().__init__(django_app, logger, "session fast path", SESSION_FAST_PATH)
        self.csrf = middleware(CSRF)
        self.templates = {}
        for secure in (False, True):
            template = harvest(views.no_store(JsonResponse({})), PATH, secure)
            self.templates[secure] = (template.headers, template.length_at, template.charset)
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
