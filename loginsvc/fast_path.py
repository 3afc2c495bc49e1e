"""What the WSGI fast paths ahead of Django share, derived from the declared middleware chain: request phase, header harvest, metrics.

The base of accounts/fast_session.py (GET /api/session) and sso/fast_token.py (userinfo,
introspection). What each does in place of a middleware is that entry's role in
loginsvc/middleware_chain.py, and each piece is Django's own code, so an answer from here is
tagged, timed and logged exactly like Django's, with the same headers.
"""
from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any, NamedTuple
from urllib.parse import parse_qsl
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from django.conf import settings
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from prometheus_client import Counter

from loginsvc import middleware_chain
from loginsvc.accounts import client_ip
from loginsvc.middleware_chain import Middleware, Request, Response
from loginsvc.observability.logs import request_id
from loginsvc.observability.middleware import RequestObserver, method_label, request_id_for

ERROR_LOG_SECONDS = 60.0
# An answer: the response headers (without the per-request ones added here) and the body; or a
# string, the reason the request goes to Django instead.
Answer = tuple[list[tuple[str, str]], bytes]


def _unused(request: HttpRequest) -> HttpResponse:
    raise AssertionError("only the middlewares' process_request/process_response are called")


def middleware(path: str) -> Any:
    """An instance of the chain's middleware at `path`, for calling its process_request/process_response."""
    return import_string(path)(_unused)


def unsupported_chain(paths: Collection[str]) -> str | None:
    """Why a fast path answering `paths` cannot mirror the current middleware chain, or None.

    Only the declared chain is known (what another middleware would do cannot be): settings.MIDDLEWARE
    must be it, and its roles must be ones the fast paths can stand in for."""
    chain = middleware_chain.CHAIN
    if list(settings.MIDDLEWARE) != [entry.path for entry in chain]:
        return "MIDDLEWARE is not the chain declared in loginsvc/middleware_chain.py"
    roles = [entry.request for entry in chain]
    if Request.OBSERVING not in roles or Response.PER_REQUEST not in [entry.response for entry in chain]:
        return "no middleware of the chain tags, times and logs requests as the fast paths do"
    if Request.FORWARDING in roles and Request.PROCESS in roles[:roles.index(Request.FORWARDING)]:
        return "a middleware reads the request before the untrusted forwarded headers are dropped"
    for entry in chain:
        if entry.request is Request.OWN_PATHS and any(path in import_string(entry.routes) for path in paths):
            return f"{entry.path} answers a path of the fast path itself"
    return None


class Template(NamedTuple):
    """A view's 200 answer as the chain's response phase leaves it."""

    headers: list[tuple[str, str]]  # the view's own, then the ones the chain adds
    length_at: int                  # where Content-Length is among them
    own: int                        # how many are the view's own
    charset: str                    # the body's

    def added(self) -> tuple[list[tuple[str, str]], int]:
        """The headers the chain adds after the view's own, and where Content-Length is among them."""
        return self.headers[self.own:], self.length_at - self.own


def _phase(path: str, request: HttpRequest, response: HttpResponse | None = None) -> Any:
    """The request phase (no `response`) or the response phase on `response` of the middleware at `path`,
    its own code: process_request/process_response, or a plain callable middleware around an inner that
    answers `response`."""
    cls = import_string(path)
    if response is None and hasattr(cls, "process_request"):
        return middleware(path).process_request(request)
    if response is not None and hasattr(cls, "process_response"):
        return middleware(path).process_response(request, response)
    return cls(lambda _request: response)(request)


def _probe_request(path: str, method: str, secure: bool) -> WSGIRequest:
    """A request without cookies as the response phase sees it: the request phase of the entries
    acting on cookies run on it (the session is read, as SessionLifetimeMiddleware reads every one)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "fast-path-probe",
        "SERVER_PORT": "443" if secure else "80", "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "https" if secure else "http",
    }
    if secure and settings.SECURE_PROXY_SSL_HEADER:
        header, value = settings.SECURE_PROXY_SSL_HEADER
        environ[header] = value
    request = WSGIRequest(environ)
    for entry in middleware_chain.CHAIN:
        if entry.request is Request.COOKIES:
            _phase(entry.path, request)
    if request.is_secure() is not secure:
        raise RuntimeError("cannot build a probe request with is_secure() == %s" % secure)
    return request


def harvest(response: HttpResponse, path: str, secure: bool, method: str = "GET") -> Template:
    """The headers Django's response phase gives `response`, a view's 200 answer to a plain `method`
    `path`: the HARVESTED entries of the chain run on it, innermost first, their own code."""
    own = list(response.items())
    request = _probe_request(path, method, secure)
    for entry in reversed(middleware_chain.CHAIN):
        if entry.response is Response.HARVESTED:
            response = _phase(entry.path, request, response)
    headers = list(response.items())
    if response.cookies or response.status_code != 200:
        raise RuntimeError("the probe answer sets cookies or is not a 200")
    length_at = [name for name, _ in headers].index("Content-Length")
    if headers[:len(own)] != own or length_at < len(own):
        raise RuntimeError("the harvested headers do not start with the view's own")
    return Template(headers, length_at, len(own), response.charset)


def urlencoded_pairs(request: WSGIRequest) -> list[tuple[str, str]] | None:
    """request.POST's pairs for a urlencoded UTF-8 body: Django's checks on the body (size), then its
    QueryDict's parse (keep blank values, the field limit, UTF-8), in order. ~90,000 instructions less
    than building the QueryDict. None for another Content-Type, a parameter besides charset=utf-8, or
    what Django's parse would treat specially (not UTF-8, too many fields)."""
    if request.content_type != "application/x-www-form-urlencoded" or any(
            name != "charset" or value.lower() != "utf-8" for name, value in request.content_params.items()):
        return None
    try:
        text = request.body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None


class FastPath:
    """Base of a WSGI application that answers some plain requests itself and hands the rest to `inner`."""

    def __init__(self, inner: WSGIApplication, logger: logging.Logger, what: str, counter: Counter) -> None:
        self.inner = inner
        self.logger, self.what = logger, what
        self.counter = counter                 # its last label is the result: "served" or the reason
        self.children: dict[tuple[str, ...], Any] = {}
        self.observer = RequestObserver()
        # The request phase, derived from the chain: the forwarded headers dropped, then each PROCESS entry.
        chain: tuple[Middleware, ...] = middleware_chain.CHAIN
        self.forwarding = any(entry.request is Request.FORWARDING for entry in chain)
        self.process = tuple(middleware(entry.path).process_request for entry in chain if entry.request is Request.PROCESS)
        self.error_logged_at = -ERROR_LOG_SECONDS

    def respond(self, environ: WSGIEnvironment, start_response: StartResponse, view: str,
                attempt: Callable[[], Answer | str], labels: tuple[str, ...] = (),
                consumed: Callable[[], bytes | None] = lambda: None) -> Iterable[bytes]:
        """`attempt()` under the request's id; its answer tagged, timed and logged, or `inner` answers.

        The counter gets `labels` and "served" or the reason; `inner` gets the environ as it came, untouched, except
        that a body `attempt()` read from wsgi.input (`consumed()`: its bytes) is given to it again."""
        started = time.perf_counter()
        rid = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        token = request_id.set(rid)  # log lines from here on carry it, as under the middleware
        try:
            answer = attempt()
            if not isinstance(answer, str):
                headers, body = answer
                headers += self.observer.headers(rid)
                self.observer.observe(view, method_label(environ.get("REQUEST_METHOD")), environ.get("PATH_INFO", ""),
                                      200, time.perf_counter() - started)
        finally:
            request_id.reset(token)
        self.count(*labels, answer if isinstance(answer, str) else "served")
        if isinstance(answer, str):
            body = consumed()
            if body is not None:  # the stream is spent: Django reads the same bytes from a new one
                environ = {**environ, "wsgi.input": io.BytesIO(body)}
            return self.inner(environ, start_response)
        start_response("200 OK", headers)
        return [body]

    def count(self, *labels: str) -> None:
        """The counter's child for these labels, looked up once per worker (labels() is not free).

        Created on first use, in the worker: with preload_app this object is built in gunicorn's
        master, before the multiprocess metrics directory exists."""
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.counter.labels(*labels)
        child.inc()

    def django_request(self, environ: WSGIEnvironment) -> WSGIRequest | None:
        """Django's request for a copy of `environ` after the chain's request phase (FORWARDING, then the
        PROCESS entries), or None when that phase would answer itself (HTTPS redirect, PREPEND_WWW,
        refused Host or agent). The COOKIES entries are the caller's: nothing without cookies."""
        meta = environ.copy()
        if self.forwarding:
            client_ip.strip_untrusted_forwarding(meta)
        request = WSGIRequest(meta)
        try:
            for process_request in self.process:
                if process_request(request) is not None:
                    return None
        except (SuspiciousOperation, PermissionDenied):
            return None
        return request

    def report_error(self) -> None:
        """Log a failure at most once a minute (the caller counts every one); never request data."""
        now = time.monotonic()
        if now - self.error_logged_at >= ERROR_LOG_SECONDS:
            self.error_logged_at = now
            self.logger.exception("%s failed; Django answered (further failures for %.0f s are only counted in %s)",
                                  self.what, ERROR_LOG_SECONDS, self.counter.describe()[0].name + "_total")
