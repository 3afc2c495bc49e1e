"""The Django middleware chain, declared once: settings.MIDDLEWARE is built from it, and the node's fast paths derive what they mirror from it.

Each entry says what the WSGI fast paths ahead of Django (loginsvc/fast_path.py, accounts/fast_session.py,
sso/fast_token.py) do in its place, on the way in (Request) and on the way out (Response). They mirror
this chain and no other: under any other settings.MIDDLEWARE they turn themselves off. A new entry
needs its two roles here, and the fast paths' parity tests then say whether the answers still match.
No Django imports: settings.py imports this module.
"""
from __future__ import annotations

from enum import Enum
from typing import NamedTuple


class Request(Enum):
    """An entry's request phase, and what a fast path does instead (the value says how)."""

    FORWARDING = "drops an untrusted peer's X-Forwarded-*: the fast paths call the same function on their copy of the environ"
    OBSERVING = "request id, latency histogram, access log: FastPath.respond, with observability's own helpers"
    OWN_PATHS = "answers only the paths in `routes`: a fast path's paths must not be among them (checked at start-up)"
    PROCESS = "its process_request runs as is, in chain order; an answer or a refusal from it hands the request to Django"
    COOKIES = ("acts only on the request's cookies (session, CSRF, user, lifetime): nothing without them; a fast path "
               "answering requests with cookies mirrors each such entry itself (accounts/fast_session.py:MIRRORED)")
    NOTHING = "nothing on the way in"


class Response(Enum):
    """An entry's response phase, and what a fast path does instead."""

    HARVESTED = "its headers are harvested at start-up by running it on a probe (fast_path.harvest), innermost first"
    PER_REQUEST = "X-Served-By and X-Request-ID, added to every answer by FastPath.respond"
    NOTHING = "nothing on the way out (for the fast paths' plain 200 answers)"


class Middleware(NamedTuple):
    """One entry of the chain: its dotted path and its two roles for the fast paths."""

    path: str
    request: Request
    response: Response
    routes: str = ""  # OWN_PATHS: the dotted name of the {path: view} it answers itself


CHAIN: tuple[Middleware, ...] = (
    # First: a peer outside LOGINSVC_TRUSTED_PROXIES loses its X-Forwarded-* headers before anyone reads them.
    Middleware("loginsvc.accounts.client_ip.ForwardedHeadersMiddleware", Request.FORWARDING, Response.NOTHING),
    Middleware("loginsvc.observability.middleware.RequestContextMiddleware", Request.OBSERVING, Response.PER_REQUEST),
    Middleware("loginsvc.health.middleware.HealthMiddleware", Request.OWN_PATHS, Response.NOTHING,
               routes="loginsvc.health.middleware.ROUTES"),
    Middleware("django.middleware.security.SecurityMiddleware", Request.PROCESS, Response.HARVESTED),
    Middleware("django.contrib.sessions.middleware.SessionMiddleware", Request.COOKIES, Response.HARVESTED),
    Middleware("django.middleware.common.CommonMiddleware", Request.PROCESS, Response.HARVESTED),
    Middleware("django.middleware.csrf.CsrfViewMiddleware", Request.COOKIES, Response.HARVESTED),
    Middleware("django.contrib.auth.middleware.AuthenticationMiddleware", Request.COOKIES, Response.NOTHING),
    Middleware("loginsvc.accounts.sessions.SessionLifetimeMiddleware", Request.COOKIES, Response.NOTHING),
    Middleware("django.middleware.clickjacking.XFrameOptionsMiddleware", Request.NOTHING, Response.HARVESTED),
    Middleware("loginsvc.accounts.headers.ContentSecurityPolicyMiddleware", Request.NOTHING, Response.HARVESTED),
)

MIDDLEWARE: list[str] = [entry.path for entry in CHAIN]  # settings.MIDDLEWARE
