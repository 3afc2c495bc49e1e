"""Where mail goes: EMAIL_URL (`smtp://`, `smtp://…?starttls=1`, `smtps://`) read into a Django email backend.

The URL names the server, the transport security and the account: `smtp://host[:port]` (plain, for
a relay on the same host or network), `smtp://user:password@host[:port]?starttls=1` (STARTTLS
required, RFC 3207), `smtps://user:password@host[:port]` (implicit TLS, RFC 8314). The password may
come from EMAIL_PASSWORD_FILE instead (a mounted secret), and `?cafile=FILE` trusts a private CA.
A password never travels over plain `smtp://`: such a URL is refused at start, as a bad one is, in
one message naming the variable and never echoing the URL (it may hold the password).
"""
from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.smtp import EmailBackend

from loginsvc import conf

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    user: str = ""
    password: str = ""
    cafile: str = ""


def _refuse(problem: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"EMAIL_URL: {problem}")


def _options(query: str) -> tuple[bool, str]:
    starttls, cafile = False, ""
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "starttls" and value.lower() in TRUE + FALSE:
            starttls = value.lower() in TRUE
        elif name == "cafile" and value:
            cafile = value
        else:
            raise _refuse(f"unknown or empty option {name!r} (known: starttls=1, cafile=FILE)")
    return starttls, cafile


def parse(url: str, password_file: str = "") -> Server:
    """The server `url` names; ImproperlyConfigured naming EMAIL_URL and the problem."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise _refuse("expected smtp://host[:port] or smtps://host[:port]")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise _refuse("the port is not a number from 1 to 65535") from None
    if parts.path not in ("", "/") or parts.fragment:
        raise _refuse("no path or fragment after the host")
    starttls, cafile = _options(parts.query)
    implicit = parts.scheme == "smtps"
    if implicit and starttls:
        raise _refuse("starttls=1 with smtps:// (TLS from the first byte already): use one of them")
    password = unquote(parts.password or "")
    if password_file:
        try:
            password = Path(password_file).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"EMAIL_PASSWORD_FILE: cannot read it ({exc.strerror})") from None
    if (parts.username or password) and not (implicit or starttls):
        raise _refuse("credentials over plain smtp:// would cross the network in clear: use smtps:// or ?starttls=1")
    if cafile and not (implicit or starttls):
        raise _refuse("cafile= needs TLS: smtps:// or ?starttls=1")
    if cafile and not Path(cafile).is_file():
        raise _refuse("cafile= names no readable file")
    return Server(parts.hostname, port, implicit, starttls, unquote(parts.username or ""), password, cafile)


def configured(environ: Any = None) -> Server | None:
    """The server of this process's environment, or None when EMAIL_URL is not set (mail then waits)."""
    env = os.environ if environ is None else environ
    url = env.get("EMAIL_URL", "").strip()
    if not url:
        if env.get("EMAIL_PASSWORD_FILE", "").strip():
            raise ImproperlyConfigured("EMAIL_PASSWORD_FILE: set without EMAIL_URL")
        return None
    return parse(url, env.get("EMAIL_PASSWORD_FILE", "").strip())


class Backend(EmailBackend):
    """Django's SMTP backend, trusting `cafile` when given instead of the system's CAs."""

    def __init__(self, cafile: str = "", **kwargs: Any) -> None:
        self.cafile = cafile
        super().__init__(**kwargs)

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile or None)


def backend(server: Server) -> Backend:
    """A connection to `server` that raises on failure (the outbox retries), timed out per attempt."""
    return Backend(host=server.host, port=server.port, username=server.user, password=server.password,
                   use_tls=server.starttls, use_ssl=server.implicit_tls, cafile=server.cafile,
                   timeout=conf.get("MAIL_TIMEOUT_SECONDS"), fail_silently=False)


def check_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """`manage.py check --deploy`: production without EMAIL_URL keeps every message in the outbox."""
    from django.conf import settings

    if settings.PRODUCTION and settings.EMAIL_SERVER is None:
        return [checks.Warning("EMAIL_URL is not set: mail (recovery codes, notices) waits in the outbox, undelivered",
                               hint="Set EMAIL_URL to your SMTP relay (docs/mail.md).", id="loginsvc.W030")]
    return []
