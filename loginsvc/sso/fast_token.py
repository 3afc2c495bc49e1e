"""GET /oidc/userinfo/ and POST /oidc/introspect/ ahead of Django's middleware chain, for products' back ends.

Why: products' back ends ask these on their hot path. Through Django one answer cost 6.4-8.1
million instructions (in-process, callgrind), 7-9x a fast-path GET /api/session (0.92 million),
and ran at 0.24-0.31 of its rate per worker (docs/benchmarks.md). Profiling showed
where: the ORM building the same token and client queries on every request (a select_related
.first() alone: 4.5 million), then the middleware chain, URL resolving, and the toolkit's
request building. This WSGI wrapper (loginsvc/wsgi.py) answers the plain successful case in
~1.3 million and hands everything else to Django, which stays the authority.

Answered here, from a request with no cookies and no query string:
- GET /oidc/userinfo/ with an Authorization header and no body: the toolkit's own userinfo
  endpoint (OAuthLibCore.create_userinfo_response's steps, the configured server and validator),
  so every check it makes (token present, not expired, scope openid, RFC 8707 resource, usable
  client, our validator's header-only rule) and the claims are the toolkit's code. Only its token
  query is a Prepared read (sso/prepared.py: the same SQL and objects, compiled once per thread).
  Served only when the toolkit answers 200 with a JSON body.
- POST /oidc/introspect/ with a urlencoded body: views.introspect_view's steps with the same
  validator (client authentication, then sso/introspection.body: what the client may see).
  The token is read first (the columns body() looks at) with its client's row, so a client asking
  about its own token is not read again; another asking client (the mail server, about mail tokens)
  is kept for CLIENT_KEEP_SECONDS. Served when the client authenticated as a confidential client
  and the token parameter is usable, {"active": false} included; refusals (401, 400, a NUL in a
  value) are Django's, which logs them with the view's audit line. A body read here is given to Django.

Kept between requests: compiled SQL, each token family's amr, which never changes (sso/reads.py),
and that asking client. Each request reads the token from the database, so a revocation, a rotation
or a logout is refused by every node on the very next request, as is a new secret of a token's own
client. The kept client still authenticates on every request (the toolkit's constant-time check);
its deletion or a change of its secret or type takes effect on a node within CLIENT_KEEP_SECONDS,
and a new secret works at once (refused here, it goes to Django, which reads the row). No key is
loaded or used.

The headers are Django's, harvested from each view's answer at start-up by loginsvc/fast_path.py
(the declared middleware chain's response phase; another chain turns this off), then tagged, timed
and logged there. The chain's entries acting on cookies do nothing to the requests answered here.
unsupported() also insists on the URL's exact decorator stack (refuse_nul, never_cache).
tests/sso/test_fast_token.py compares status, body and every header of both paths, case by case.
LOGINSVC_SSO_FAST_PATH=0 turns it off; loginsvc_sso_fast_path_total{endpoint,result} counts it.

It overrides private functions of django-oauth-toolkit and oauthlib (_load_access_token,
_load_application, _get_additional_claims_is_request_agnostic, OAuthLibCore._extract_params), on
the path that decides whether a token is valid, and a release may change them without notice. So
it serves only under the releases its parity tests (tests/sso/test_fast_token.py) ran on, PROVEN;
under any other, every request is handed to Django (result="versions") and start-up says why.
"""
from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any
from urllib.parse import unquote_plus
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.core.handlers.wsgi import WSGIRequest
from django.db import close_old_connections
from django.http import HttpResponse, JsonResponse
from django.urls import resolve, reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from oauth2_provider import views as toolkit
from oauth2_provider.models import AbstractApplication, get_application_model
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from prometheus_client import Counter

from loginsvc import conf
from loginsvc.accounts.views import oauth_no_store
from loginsvc.fast_path import Answer, FastPath, harvest, unsupported_chain, urlencoded_pairs
from loginsvc.sso import introspection, views
from loginsvc.sso.introspection import checksum
from loginsvc.sso.prepared import Kept
from loginsvc.sso.reads import (ACCESS_TOKENS, APPLICATIONS, INTROSPECTED_TOKENS, INTROSPECTED_TOKENS_OF_OTHERS,
                                REFRESH_TOKENS)

logger = logging.getLogger(__name__)

FAST_PATH = Counter("loginsvc_sso_fast_path_total",
                    "Userinfo/introspection requests the SSO fast path answered (result=served) or handed to Django.",
                    ["endpoint", "result"])
# Values of result: "served", or why Django answered.
RESULTS = (
    "served",
    "request",      # not the plain shape (cookies, query, method, body), HTTPS redirect, refused Host
    "refused",      # the answer is an error (bad token or client): Django answers and logs it
    "client",       # the client is not in the database (or is a CIMD client): Django looks further
    "error",        # a bug or a database failure here; logged, and Django answers
    "versions",     # the toolkit or oauthlib is a release the parity tests did not run on
)
# Releases (major.minor) whose private functions this module overrides, as the parity tests ran them.
PROVEN = {"django-oauth-toolkit": ("3.4",), "oauthlib": ("4.0",)}


def unproven_versions(installed: Callable[[str], str] = metadata.version) -> str | None:
    """Why the installed toolkit or oauthlib is not one the parity tests ran on, or None."""
    for name, releases in PROVEN.items():
        try:
            version = installed(name)
        except metadata.PackageNotFoundError:
            return f"{name} is not installed as a package: its release cannot be told"
        if ".".join(version.split(".")[:2]) not in releases:
            return f"{name} {version} is not a release the fast path was proven on ({', '.join(releases)})"
    return None

Application = get_application_model()
# How long introspection keeps an asking client that is not the token's own (the mail server asking
# about mail tokens): one read a second per worker instead of one per request (~35 us of ~190 us).
CLIENT_KEEP_SECONDS = 1.0


class HandOff(Exception):
    """Django must answer this request; the argument is the RESULTS reason."""


def fast_validator(base: type, clients: Callable[[str], Any] = APPLICATIONS.first) -> type:
    """`base` (the configured validator) reading tokens through Prepared reads and clients with `clients`."""

    agnostic = base._get_additional_claims_is_request_agnostic()

    class FastValidator(base):  # type: ignore[misc, valid-type]
        @classmethod
        def _get_additional_claims_is_request_agnostic(cls) -> bool:
            """The toolkit inspects get_additional_claims' signature twice per claims dict (~40 us);
            it is the class's, fixed: asked once."""
            return agnostic

        def _load_access_token(self, token: str) -> Any:
            return ACCESS_TOKENS.first(checksum(token))

        def _load_application(self, client_id: str, request: Any) -> Any:
            """The toolkit's method, given the client it would have read (its cached-client branch):
            request.client if it is that client's row read in this request, else `clients(client_id)`.
            A client not found (the toolkit may fetch a CIMD document) or a CIMD one: Django."""
            if not client_id:
                raise HandOff("refused")
            client = request.client
            if not (isinstance(client, Application) and client.client_id == client_id):
                client = clients(client_id)
                if client is None:
                    raise HandOff("client")
            if client.registration_source == Application.RegistrationSource.CIMD:
                raise HandOff("client")
            request.client = client
            return super()._load_application(client_id, request)

    FastValidator.__name__ = FastValidator.__qualname__ = f"Fast{base.__name__}"
    return FastValidator


def _layers(func: Any) -> list[Any]:
    """A URL's callable and what it wraps (functools.wraps' __wrapped__), outermost first."""
    layers = [func]
    while hasattr(layers[-1], "__wrapped__") and len(layers) < 8:
        layers.append(layers[-1].__wrapped__)
    return layers


def _same_wrapper(func: Any, decorator: Any) -> bool:
    """`func` is what `decorator` makes of a view (the same wrapper code)."""
    return getattr(func, "__code__", None) is decorator(lambda request: None).__code__


def unsupported() -> str | None:
    """Why this module cannot promise Django's answer under the current settings and URLs, or None.

    The URLs must be exactly the ones mirrored here: userinfo is refuse_nul(never_cache(the toolkit's
    UserInfoView)) and introspection refuse_nul(views.introspect_view); another decorator or view
    could answer differently, so any change turns the fast path off (and its tests fail)."""
    reason = unsupported_chain([path for path, _method in endpoints()])
    if reason is not None:
        return reason
    from django.db import connection

    if connection.vendor not in ("sqlite", "postgresql"):
        # Its prepared reads (prepared.py) are tested against these two; another backend could
        # compile to another placeholder style or convert rows differently.
        return f"prepared reads are only proven on SQLite and PostgreSQL (database: {connection.vendor})"
    if not oauth2_settings.OIDC_ENABLED:
        return "OpenID Connect is off"
    userinfo = _layers(resolve(reverse("oauth2_provider:user-info")).func)
    if not (len(userinfo) >= 3 and _same_wrapper(userinfo[0], views.refuse_nul)
            and _same_wrapper(userinfo[1], never_cache)
            and _same_wrapper(userinfo[2], lambda _view: toolkit.UserInfoView.as_view())
            and userinfo[2].view_class is toolkit.UserInfoView):
        return "userinfo is not refuse_nul(never_cache(the toolkit's UserInfoView))"
    introspect = _layers(resolve(reverse("oauth2_provider:introspect")).func)
    if not (len(introspect) >= 2 and _same_wrapper(introspect[0], views.refuse_nul)
            and introspect[1:] == _layers(views.introspect_view)):
        return "introspection is not refuse_nul(sso.views.introspect_view)"
    if Application.is_usable is not AbstractApplication.is_usable:
        return "the application model decides per request whether it is usable"
    return None


def _userinfo_response() -> HttpResponse:
    """The URL's never_cache(UserInfoView): HttpResponse(body), the endpoint's Content-Type, then
    never_cache's headers; its Expires is the current second (http_date(now)), so its headers are
    rebuilt once a second (FastTokenApp.own_headers)."""
    response = HttpResponse(b"", status=200)
    response["Content-Type"] = "application/json"
    add_never_cache_headers(response)
    return response


def _introspect_response() -> HttpResponse:
    """introspect_view's answer to a confidential client: JsonResponse, then the OAuth no-store headers."""
    return oauth_no_store(JsonResponse({}))


def _has_body(environ: WSGIEnvironment) -> bool:
    """A body is announced (without reading it: Django may have to)."""
    return environ.get("CONTENT_LENGTH", "") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ


def _plain(environ: WSGIEnvironment) -> bool:
    """No cookies (a session or CSRF cookie changes what the middlewares do), no query string."""
    return "HTTP_COOKIE" not in environ and not environ.get("QUERY_STRING")


def endpoints() -> dict[tuple[str, str], str]:
    """(path, method) of the requests this module answers, and the endpoint label of each."""
    return {(reverse("oauth2_provider:user-info"), "GET"): "userinfo",
            (reverse("oauth2_provider:introspect"), "POST"): "introspect"}


class HandOffApp:
    """Every request to Django, the ones the fast path would have taken counted with `reason`."""

    def __init__(self, inner: WSGIApplication, reason: str) -> None:
        self.inner, self.reason = inner, reason
        self.endpoints = endpoints()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        endpoint = self.endpoints.get((environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")))
        if endpoint is not None:
            FAST_PATH.labels(endpoint, self.reason).inc()
        return self.inner(environ, start_response)


class FastTokenApp(FastPath):
    """The WSGI application: the fast path for plain userinfo and introspection, `inner` for the rest."""

    def __init__(self, inner: WSGIApplication) -> None:
        super().__init__(inner, logger, "SSO fast path", FAST_PATH)
        self.endpoints = endpoints()
        self.names = {path: resolve(path).url_name or "unmatched" for path, _method in self.endpoints}
        view = toolkit.UserInfoView
        server = view.get_server_class()(fast_validator(view.get_validator_class())(), **oauth2_settings.server_kwargs)
        self.core = view.get_oauthlib_backend_class()(server)  # shared, as the view's own core is
        self.asking_clients = Kept(APPLICATIONS.first, CLIENT_KEEP_SECONDS)
        self.introspect_validator = fast_validator(views.Validator, self.asking_clients.first)  # one per request
        responses = {"userinfo": _userinfo_response, "introspect": _introspect_response}
        self.tails = {(endpoint, secure): harvest(responses[endpoint](), path, secure, method).added()
                      for (path, method), endpoint in self.endpoints.items() for secure in (False, True)}
        self.introspect_own = list(_introspect_response().items())
        self.userinfo_own: tuple[int, list[tuple[str, str]]] = (-1, [])

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        endpoint = self.endpoints.get((path, environ.get("REQUEST_METHOD")))
        if endpoint is None:
            return self.inner(environ, start_response)
        made: list[WSGIRequest] = []  # the request answer() built, if any: it may have read the body
        return self.respond(environ, start_response, self.names[path], lambda: self._attempt(endpoint, environ, made),
                            (endpoint,), lambda: getattr(made[0], "_body", None) if made else None)

    def _attempt(self, endpoint: str, environ: WSGIEnvironment, made: list[WSGIRequest]) -> Answer | str:
        """answer() with the database connection upkeep Django does around a request.

        Django's request_started and request_finished receivers close connections past
        CONN_MAX_AGE or broken by an error (close_old_connections), and also reset the DEBUG query
        log, close caches and reset the URLconf, which this path does not use. Sending both
        signals cost ~220,000 instructions, a quarter of a whole fast /api/session answer;
        close_old_connections itself ~37,000. Once, before the query, is enough: a connection left
        obsolete or broken by this request is closed before the next one uses it (and a failure
        here hands the request to Django, whose request_started closes it at once)."""
        close_old_connections()
        try:
            return self.answer(endpoint, environ, made)
        except HandOff as handoff:
            return str(handoff)
        except Exception:  # noqa: BLE001 - nothing was sent or written: Django answers
            self.report_error()
            return "error"

    def answer(self, endpoint: str, environ: WSGIEnvironment, made: list[WSGIRequest]) -> Answer | str:
        """Headers and body of Django's answer if it is a plain 200, else the RESULTS reason it is not."""
        if not _plain(environ):
            return "request"
        if endpoint == "userinfo" and ("HTTP_AUTHORIZATION" not in environ or _has_body(environ)):
            return "request"
        request = self.django_request(environ)
        if request is None:
            return "request"
        made.append(request)
        try:
            body = self.userinfo(request) if endpoint == "userinfo" else self.introspect(request)
        except (SuspiciousOperation, PermissionDenied):  # an oversized or malformed body
            return "request"
        if isinstance(body, str):
            return body
        own = self.own_headers() if endpoint == "userinfo" else self.introspect_own
        tail, length_at = self.tails[endpoint, request.is_secure()]
        headers = own + tail
        headers[len(own) + length_at] = ("Content-Length", str(len(body)))
        return headers, body

    def own_headers(self) -> list[tuple[str, str]]:
        """_userinfo_response()'s headers of this second (threads may both rebuild it: the same value)."""
        second = int(time.time())
        if self.userinfo_own[0] != second:
            self.userinfo_own = (second, list(_userinfo_response().items()))
        return self.userinfo_own[1]

    def userinfo(self, request: WSGIRequest) -> bytes | str:
        """OpenID Connect Core §5.3: the toolkit's answer, when it is the claims as JSON."""
        uri, http_method, body, headers = self.core._extract_params(request)
        # OAuthLibCore.create_userinfo_response, with the string-valued entries of its headers: it
        # passes the whole WSGI environ, and oauthlib's Request converts every value; the plumbing
        # (wsgi.*, the server's socket) are objects that take an exception each (~10,000
        # instructions apiece under gunicorn). Every request header and CGI variable stays.
        headers = {name: value for name, value in headers.items() if isinstance(value, str)}
        try:
            headers, body, status = self.core.server.create_userinfo_response(uri, http_method, body, headers)
        except OAuth2Error:
            return "refused"
        if status != 200 or headers != {"Content-Type": "application/json"} or not isinstance(body, str):
            return "refused"
        return body.encode("utf-8")  # HttpResponse(str): the default charset, before Content-Type is set

    def introspect(self, request: WSGIRequest) -> bytes | str:
        """introspect_view's steps for an authenticated confidential client and a usable token parameter."""
        pairs = urlencoded_pairs(request)  # None: Django refuses another charset (400) or parses it specially
        if pairs is None or any("\x00" in value for _name, value in pairs):  # views.refuse_nul answers a NUL
            return "request"
        form = dict(pairs)  # the last value of a name wins, as in QueryDict.get() and .dict()
        value = form.get("token")
        if not value or len(value) > introspection.MAX_TOKEN_LENGTH:
            return "refused"
        # The token first, with its client's row (a product asking about its own token); its state is
        # told only once the client has authenticated, as in the view (a client that fails: Django). A
        # client kept as an asker about others' tokens (the mail server) gets the token without its client.
        authorization = request.META.get("HTTP_AUTHORIZATION", "")
        other = self.asking_clients.holds(_basic_user(authorization) or form.get("client_id"))
        read = INTROSPECTED_TOKENS_OF_OTHERS if other else INTROSPECTED_TOKENS
        token = introspection.token_of(value, form.get("token_type_hint", ""), read.first, REFRESH_TOKENS.first)
        oauth_request = OAuthRequest(request.build_absolute_uri(), "POST", form, {"HTTP_AUTHORIZATION": authorization})
        oauth_request.client_id = form.get("client_id")
        oauth_request.client_secret = form.get("client_secret")
        if token is not None and not other:
            oauth_request.client = token.application
        if not self.introspect_validator().authenticate_client(oauth_request):
            return "refused"
        client = oauth_request.client
        if client is None or client.client_type != client.CLIENT_CONFIDENTIAL:
            return "refused"
        # JsonResponse's json.dumps(cls=DjangoJSONEncoder): the same bytes for these str, int and
        # bool values (the encoder only adds types JSON lacks; one would raise here: Django answers).
        return json.dumps(introspection.body(client, token)).encode("utf-8")


def _basic_user(authorization: str) -> str | None:
    """The client id of an HTTP Basic header (RFC 6749 §2.3.1: form-urlencoded, then base64), or None. Only
    to choose a read: the validator parses and checks the header itself."""
    if not authorization.startswith("Basic "):
        return None
    try:
        return unquote_plus(base64.b64decode(authorization[6:], validate=True).decode("utf-8").partition(":")[0])
    except ValueError:
        return None


def wrap(inner: WSGIApplication) -> WSGIApplication:
    """loginsvc/wsgi.py's application: the fast path in front of `inner`, unless off or unsupported."""
    if not conf.get("SSO_FAST_PATH"):
        return inner
    versions = unproven_versions()
    if versions is not None:
        logger.warning("SSO fast path off: %s; Django answers every request", versions)
        return HandOffApp(inner, "versions")
    try:
        reason = unsupported()
        if reason is None:
            return FastTokenApp(inner)
    except Exception:  # noqa: BLE001 - e.g. a toolkit upgrade this does not know: serve anyway
        logger.exception("SSO fast path off: it could not be set up")
        return inner
    logger.warning("SSO fast path off: %s", reason)
    return inner
