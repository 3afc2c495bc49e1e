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
import ssl
from collections.abc import Mapping
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

from canary.alerts.pipelines import Email, Pipeline, PipelineError, Sentry, Webhook, fingerprint

SMTP_PORTS = {"smtp": 25, "smtps": 465}
SMTP_OPTIONS = ("starttls", "cafile")
YES, NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
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
    """The email pipeline of ALERT_SMTP_URL: TLS as the URL asks (verified against the system's CAs, or the
    `cafile=` ones), credentials only inside TLS, recipients from ALERT_EMAIL_TO."""
    key = "ALERT_SMTP_URL"
    parts, port = _split(env[key].strip(), key, tuple(SMTP_PORTS))
    if parts.path not in ("", "/") or parts.fragment:
        raise PipelineError(f"{key}: takes no path: smtp[s]://[user:password@]host[:port][?starttls=1&cafile=FILE]")
    options = _options(parts.query, key)
    starttls = options.get("starttls", "0").lower()
    if starttls not in YES + NO:
        raise PipelineError(f"{key}: starttls= takes 1 or 0")
    if starttls in YES and parts.scheme == "smtps":
        raise PipelineError(f"{key}: starttls=1 with smtps:// (TLS from the first byte already): use one of them")
    tls = "implicit" if parts.scheme == "smtps" else "starttls" if starttls in YES else "none"
    user, password = _credentials(parts)
    password = _password_file(env, user, password)
    if password is not None and not user:
        raise PipelineError(f"{key}: a password without a user: smtp[s]://USER:PASSWORD@host")
    if user and password is None:
        raise PipelineError(f"{key}: a user without a password: add it (percent-encoded) "
                            "or set ALERT_SMTP_PASSWORD_FILE")
    if password is not None and not password.isascii():
        raise PipelineError(f"{key}: the password has non-ASCII characters, which SMTP AUTH here cannot send")
    if user and tls == "none":
        raise PipelineError(f"{key}: credentials over plain smtp:// would cross the network in clear: "
                            "use smtps:// or ?starttls=1")
    if "cafile" in options and tls == "none":
        raise PipelineError(f"{key}: cafile= needs TLS: smtps:// or ?starttls=1")
    to = tuple(a.strip() for a in env.get("ALERT_EMAIL_TO", "").split(",") if a.strip())
    if not to or not all("@" in a for a in to):
        raise PipelineError("ALERT_EMAIL_TO: one or more addresses, comma-separated, are needed with ALERT_SMTP_URL")
    port = port or SMTP_PORTS[parts.scheme]
    return Email(name=f"email {parts.hostname}:{port}", host=parts.hostname or "", port=port, to=to,
                 sender=env.get("ALERT_EMAIL_FROM", "").strip() or "canary-alerts@localhost", tls=tls, user=user,
                 password=password or "", context=None if tls == "none" else _tls_context(options.get("cafile"), key),
                 secrets=_secrets(parts.password, password))


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
    parts = urlsplit(url)
    if parts.scheme.lower() not in schemes:
        raise PipelineError(f"{where}: the scheme must be {' or '.join(s + '://' for s in schemes)}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise PipelineError(f"{where}: the port is not a number from 1 to 65535")
    if not parts.hostname:
        raise PipelineError(f"{where}: no host")
    return parts._replace(scheme=parts.scheme.lower()), port


def _credentials(parts: SplitResult) -> tuple[str, str | None]:
    """The URL's user and password, percent-decoded (RFC 3986 §3.2.1); None: no password given."""
    return unquote(parts.username or ""), None if parts.password is None else unquote(parts.password)


def _options(query: str, key: str) -> dict[str, str]:
    """ALERT_SMTP_URL's ?name=value options: only the known ones, each once."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        raise PipelineError(f"{key}: the query is not name=value pairs") from None
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in SMTP_OPTIONS or name in options:
            raise PipelineError(f"{key}: {'repeated' if name in options else 'unknown'} option {name[:20]!r} "
                                f"(known: {', '.join(SMTP_OPTIONS)})")
        options[name] = value
    return options


def _password_file(env: Mapping[str, str], user: str, password: str | None) -> str | None:
    """The password from ALERT_SMTP_PASSWORD_FILE (one line; a trailing newline is not part of it), as the
    project's other secrets may come from a file rather than the environment. A named file must be there."""
    path = env.get("ALERT_SMTP_PASSWORD_FILE", "").strip()
    if not path:
        return password
    if password is not None:
        raise PipelineError("ALERT_SMTP_PASSWORD_FILE: ALERT_SMTP_URL has a password too: keep one of them")
    if not user:
        raise PipelineError("ALERT_SMTP_PASSWORD_FILE: ALERT_SMTP_URL names no user (smtp[s]://USER@host)")
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"ALERT_SMTP_PASSWORD_FILE: cannot read {path!r} "
                            f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    if not value:
        raise PipelineError(f"ALERT_SMTP_PASSWORD_FILE: {path!r} is empty")
    return value


def _tls_context(cafile: str | None, key: str) -> ssl.SSLContext:
    """Certificate and host name verified (ssl's defaults, TLS 1.2 or later); `cafile`: trust the CA
    certificates in that PEM file instead of the system's (a private CA, or a test's own)."""
    try:
        return ssl.create_default_context(cafile=cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise PipelineError(f"{key}: cafile={cafile!r} cannot be loaded "
                            f"({getattr(exc, 'strerror', None) or exc})") from None


def _secrets(*values: str | None) -> tuple[str, ...]:
    return tuple({v for v in values if v and len(v) >= SHORTEST_SECRET})
