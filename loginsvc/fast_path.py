"""What a WSGI fast path ahead of Django shares: the request phase of a plain request, and an answer's request id, metrics and access log.

The base of accounts/fast_session.py (GET /api/session) and sso/fast_token.py (userinfo,
introspection). Each piece is what Django's own chain does, so an answer from here is tagged,
timed and logged exactly like Django's.
"""
from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpResponse
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from prometheus_client import Counter

from loginsvc.accounts import client_ip
from loginsvc.observability.logs import request_id
from loginsvc.observability.middleware import RequestObserver, method_label, request_id_for

ERROR_LOG_SECONDS = 60.0
# An answer: the response headers (without the per-request ones added here) and the body; or a
# string, the reason the request goes to Django instead.
Answer = tuple[list[tuple[str, str]], bytes]


def _unused(request: Any) -> HttpResponse:
    raise AssertionError("only the middlewares' process_request is called")


class FastPath:
    """Base of a WSGI application that answers some plain requests itself and hands the rest to `inner`."""

    def __init__(self, inner: WSGIApplication, logger: logging.Logger, what: str, counter: Counter) -> None:
        self.inner = inner
        self.logger, self.what = logger, what
        self.counter = counter                 # its last label is the result: "served" or the reason
        self.children: dict[tuple[str, ...], Any] = {}
        self.observer = RequestObserver()
        self.security = SecurityMiddleware(_unused)
        self.common = CommonMiddleware(_unused)
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
        """Django's request for a copy of `environ` after the outer middlewares' request phase, or
        None when that phase would answer itself (HTTPS redirect, PREPEND_WWW, refused Host or agent).

        As ForwardedHeadersMiddleware does first, the forwarded headers of an untrusted peer go."""
        meta = environ.copy()
        client_ip.strip_untrusted_forwarding(meta)
        request = WSGIRequest(meta)
        try:
            if self.security.process_request(request) is not None:
                return None
            if self.common.process_request(request) is not None:
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
