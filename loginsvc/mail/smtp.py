"""Where mail goes: EMAIL_URL (`smtp://`, `smtp://…?starttls=1`, `smtps://`) read into a Django email backend.

The grammar is sharedlib/smtp_url.py's, the same as the router's ALERT_SMTP_URL: `smtp://host[:port]` (plain,
for a relay on the same host or network), `smtp://user:password@host[:port]?starttls=1` (STARTTLS required,
RFC 3207), `smtps://user:password@host[:port]` (implicit TLS, RFC 8314). The password may come from
EMAIL_PASSWORD_FILE instead (a mounted secret), and `?cafile=FILE` trusts a private CA. A password never
travels over plain `smtp://`: such a URL is refused at start, as a bad one is, in one message naming the
variable and never echoing the URL (it may hold the password).
"""
from __future__ import annotations

import os
import ssl
from functools import cached_property
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.smtp import EmailBackend

from loginsvc import conf
from sharedlib.smtp_url import SmtpServer, UrlError
from sharedlib.smtp_url import parse as parse_url


def parse(url: str, password_file: str = "") -> SmtpServer:
    """The server `url` names; ImproperlyConfigured naming EMAIL_URL (or EMAIL_PASSWORD_FILE) and the problem."""
    try:
        return parse_url(url, "EMAIL_URL", password_file, "EMAIL_PASSWORD_FILE")
    except UrlError as exc:
        raise ImproperlyConfigured(str(exc)) from None


def configured(environ: Any = None) -> SmtpServer | None:
    """The server of this process's environment, or None when EMAIL_URL is not set (mail then waits)."""
    env = os.environ if environ is None else environ
    url = env.get("EMAIL_URL", "").strip()
    if not url:
        if env.get("EMAIL_PASSWORD_FILE", "").strip():
            raise ImproperlyConfigured("EMAIL_PASSWORD_FILE: set without EMAIL_URL")
        return None
    return parse(url, env.get("EMAIL_PASSWORD_FILE", "").strip())


class Backend(EmailBackend):
    """Django's SMTP backend with the server's own TLS context: its `cafile=` CAs when given, else the system's."""

    def __init__(self, server: SmtpServer, **kwargs: Any) -> None:
        self.server = server
        super().__init__(host=server.host, port=server.port, username=server.user, password=server.password,
                         use_tls=server.tls == "starttls", use_ssl=server.tls == "implicit", **kwargs)

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self.server.ssl_context()


def backend(server: SmtpServer) -> Backend:
    """A connection to `server` that raises on failure (the outbox retries), timed out per attempt."""
    return Backend(server, timeout=conf.get("MAIL_TIMEOUT_SECONDS"), fail_silently=False)


def check_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """`manage.py check --deploy`: production without EMAIL_URL keeps every message in the outbox."""
    from django.conf import settings

    if settings.PRODUCTION and settings.EMAIL_SERVER is None:
        return [checks.Warning("EMAIL_URL is not set: mail (recovery codes, notices) waits in the outbox, undelivered",
                               hint="Set EMAIL_URL to your SMTP relay (docs/mail.md).", id="loginsvc.W030")]
    return []
