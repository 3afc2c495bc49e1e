"""The alert pipelines' settings, read from the environment once at start-up (docs/monitoring.md, "Alert pipelines").

ALERT_WEBHOOK_URL (comma-separated http(s) URLs; user:password in one is sent as HTTP Basic), ALERT_SMTP_URL
(`smtp://host:port`, `smtp://user:pass@host:port?starttls=1`, `smtps://user:pass@host:port`, with `?cafile=`
to trust a private CA) with ALERT_EMAIL_TO, ALERT_EMAIL_FROM and ALERT_SMTP_PASSWORD_FILE, and SENTRY_DSN.

These values hold secrets (a Slack webhook's path, an SMTP password, a DSN key), so a bad one is reported by
the variable's name and the problem alone, never echoed, and each pipeline gets a name without them: the host
and a fingerprint of the URL for a webhook, host:port for email (as before), `sentry`.
"""
from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from canary.alerts.pipelines import Email, Pipeline, PipelineError, Sentry, Webhook, fingerprint
from sharedlib import smtp_url

SHORTEST_SECRET = 4     # shorter strings are not scrubbed from error texts: they would mangle ordinary words


def from_environment(environ: Mapping[str, str] | None = None) -> list[Pipeline]:
    """Every pipeline the environment names; a bad value raises PipelineError naming the variable."""
    env = os.environ if environ is None else environ
    found: list[Pipeline] = []
    urls = [u.strip() for u in env.get("ALERT_WEBHOOK_URL", "").split(",") if u.strip()]
    for i, url in enumerate(urls, 1):
        found.append(webhook(url, "ALERT_WEBHOOK_URL" + (f" (URL {i} of {len(urls)})" if len(urls) > 1 else "")))
    if env.get("ALERT_SMTP_URL", "").strip():
        found.append(email(env))
    elif env.get("ALERT_SMTP_PASSWORD_FILE", "").strip():
        raise PipelineError("ALERT_SMTP_PASSWORD_FILE: set without ALERT_SMTP_URL")
    dsn = env.get("SENTRY_DSN", "").strip()
    if dsn:
        found.append(sentry(dsn))
    return found


def webhook(url: str, where: str) -> Webhook:
    """A webhook named `webhook HOST#FINGERPRINT`: the fingerprint covers the whole URL but its password, so two
    webhooks on one host differ and a password (unlike a webhook's random path) cannot be guessed from it."""
    parts, port = _split(url, where, ("http", "https"))
    host_port = parts.netloc.rpartition("@")[2]
    user, password = _credentials(parts)
    credentials = base64.b64encode(f"{user}:{password or ''}".encode()).decode() if parts.username else ""
    hashed = urlunsplit(parts._replace(netloc=(f"{parts.username}@" if parts.username else "") + host_port))
    plain = urlunsplit(parts._replace(netloc=host_port))
    return Webhook(name=f"webhook {parts.hostname}#{fingerprint(hashed)}", url=plain,
                   authorization=f"Basic {credentials}" if credentials else "",
                   secrets=_secrets(url, plain, urlunsplit(("", "", parts.path, parts.query, "")), parts.path,
                                    parts.query, parts.username, user, parts.password, password, credentials),
                   legacy_names=(f"webhook {parts.hostname}:{port or ''}{parts.path}",))


def email(env: Mapping[str, str]) -> Email:
    """The email pipeline of ALERT_SMTP_URL (sharedlib/smtp_url.py's grammar, as EMAIL_URL's): TLS as the URL
    asks, verified against the system's CAs or the `cafile=` ones, credentials only inside TLS, recipients from
    ALERT_EMAIL_TO."""
    url = env["ALERT_SMTP_URL"]
    try:
        server = smtp_url.parse(url, "ALERT_SMTP_URL", env.get("ALERT_SMTP_PASSWORD_FILE", "").strip(),
                                "ALERT_SMTP_PASSWORD_FILE")
    except smtp_url.UrlError as exc:
        raise PipelineError(str(exc)) from None
    to = tuple(a.strip() for a in env.get("ALERT_EMAIL_TO", "").split(",") if a.strip())
    if not to or not all("@" in a for a in to):
        raise PipelineError("ALERT_EMAIL_TO: one or more addresses, comma-separated, are needed with ALERT_SMTP_URL")
    return Email(name=f"email {server.host}:{server.port}", host=server.host, port=server.port, to=to,
                 sender=env.get("ALERT_EMAIL_FROM", "").strip() or "canary-alerts@localhost", tls=server.tls,
                 user=server.user, password=server.password, context=server.ssl_context(),
                 secrets=_secrets(urlsplit(url.strip()).password, server.password))


def sentry(dsn: str) -> Sentry:
    """The Sentry pipeline, named `sentry`; the DSN is checked here so a bad one stops the start, not an alert."""
    from sentry_sdk.utils import BadDsn, Dsn

    try:
        parsed = Dsn(dsn)
    except (BadDsn, ValueError):
        raise PipelineError("SENTRY_DSN: not a Sentry DSN (https://KEY@HOST/PROJECT)") from None
    return Sentry(name="sentry", dsn=dsn, secrets=_secrets(dsn, parsed.public_key, parsed.secret_key))


def _split(url: str, where: str, schemes: tuple[str, ...]) -> tuple[SplitResult, int | None]:
    """The URL's parts and port, checked; an error names `where` and the problem, never the URL."""
    try:
        return smtp_url.split(url, where, schemes)
    except smtp_url.UrlError as exc:
        raise PipelineError(str(exc)) from None


def _credentials(parts: SplitResult) -> tuple[str, str | None]:
    """The URL's user and password, percent-decoded (RFC 3986 §3.2.1); None: no password given."""
    return unquote(parts.username or ""), None if parts.password is None else unquote(parts.password)


def _secrets(*values: str | None) -> tuple[str, ...]:
    return tuple({v for v in values if v and len(v) >= SHORTEST_SECRET})
