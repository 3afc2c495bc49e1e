"""One grammar for an SMTP server named by a URL: the login service's mail (EMAIL_URL) and the router's alerts
(ALERT_SMTP_URL) read it alike, so an operator writes both the same way and meets the same refusals.

`smtp://host[:port]` (plain, for a relay on the same host or network), `smtp://user:password@host[:port]?starttls=1`
(STARTTLS required, RFC 3207), `smtps://user:password@host[:port]` (implicit TLS, RFC 8314). User and password are
percent-encoded (RFC 3986 §3.2.1); the password may come from a file instead (a mounted secret), and
`?cafile=FILE` trusts a private CA instead of the system's. Credentials never travel over plain `smtp://`.

The URL may hold a password, so a bad one is one UrlError naming the variable and the problem, never the
URL or any part of it.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

PORTS = {"smtp": 25, "smtps": 465}
OPTIONS = ("starttls", "cafile")
YES, NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
GRAMMAR = "smtp[s]://[user:password@]host[:port][?starttls=1&cafile=FILE]"


class UrlError(ValueError):
    """A bad URL setting or password file: the message names the variable and the problem, nothing secret."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    tls: str = "none"           # "none", "starttls" (required, never a plain fallback) or "implicit"
    user: str = ""
    password: str = field(default="", repr=False)     # never in a log line or a traceback's locals
    cafile: str = ""

    def ssl_context(self) -> ssl.SSLContext | None:
        """Certificate and host name verified (ssl's defaults, TLS 1.2 or later) against the system's CAs or
        `cafile`'s; None for plain SMTP."""
        return None if self.tls == "none" else ssl.create_default_context(cafile=self.cafile or None)


def parse(url: str, key: str, password_file: str = "", password_file_key: str = "") -> SmtpServer:
    """The server `url` names (the value of the variable `key`), with the password from `password_file` (the
    value of `password_file_key`) when given; UrlError naming the variable and the problem otherwise."""
    parts, port = split(url.strip(), key, tuple(PORTS))
    if parts.path not in ("", "/") or parts.fragment:
        raise UrlError(f"{key}: takes no path or fragment: {GRAMMAR}")
    options = _options(parts.query, key)
    starttls = options.get("starttls", "0").lower()
    if starttls not in YES + NO:
        raise UrlError(f"{key}: starttls= takes 1 or 0")
    if starttls in YES and parts.scheme == "smtps":
        raise UrlError(f"{key}: starttls=1 with smtps:// (TLS from the first byte already): use one of them")
    tls = "implicit" if parts.scheme == "smtps" else "starttls" if starttls in YES else "none"
    user = unquote(parts.username or "")
    password = None if parts.password is None else unquote(parts.password)
    if password_file:
        password = _password_from(password_file, password_file_key, key, user, password)
    if password is not None and not user:
        raise UrlError(f"{key}: a password without a user: smtp[s]://USER:PASSWORD@host")
    if user and not password:
        raise UrlError(f"{key}: a user without a password: add it (percent-encoded)"
                       + (f" or set {password_file_key}" if password_file_key else ""))
    if not (user.isascii() and (password or "").isascii()):
        raise UrlError(f"{key}: the user or password has non-ASCII characters, which SMTP AUTH here cannot send")
    if user and tls == "none":
        raise UrlError(f"{key}: credentials over plain smtp:// would cross the network in clear: "
                       "use smtps:// or ?starttls=1")
    cafile = options.get("cafile", "")
    if "cafile" in options and tls == "none":
        raise UrlError(f"{key}: cafile= needs TLS: smtps:// or ?starttls=1")
    server = SmtpServer(parts.hostname or "", port or PORTS[parts.scheme], tls, user, password or "", cafile)
    if cafile:
        try:
            server.ssl_context()        # loaded now, so a bad file stops the start rather than the first mail
        except (OSError, ssl.SSLError, ValueError) as exc:      # ValueError: a NUL in the name
            raise UrlError(f"{key}: the cafile= file cannot be loaded "
                           f"({getattr(exc, 'strerror', None) or exc})") from None
    return server


def split(url: str, key: str, schemes: tuple[str, ...]) -> tuple[SplitResult, int | None]:
    """Any URL setting's parts (scheme lower-cased) and port, checked: a scheme of `schemes`, a port from 1 to
    65535 if any, a host. The router's webhook URLs are read with it too."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in schemes:
        raise UrlError(f"{key}: the scheme must be {' or '.join(s + '://' for s in schemes)}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise UrlError(f"{key}: the port is not a number from 1 to 65535")
    if not parts.hostname:
        raise UrlError(f"{key}: no host")
    return parts._replace(scheme=parts.scheme.lower()), port


def _options(query: str, key: str) -> dict[str, str]:
    """The ?name=value options: only the known ones, each once, none empty."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        raise UrlError(f"{key}: the query is not name=value pairs") from None
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in OPTIONS:     # not echoed: a mistyped URL may have put a secret there
            raise UrlError(f"{key}: an unknown option (known: {', '.join(OPTIONS)})")
        if name in options:
            raise UrlError(f"{key}: repeated option {name!r}")
        if not value:
            raise UrlError(f"{key}: {name}= is empty")
        options[name] = value
    return options


def _password_from(path: str, path_key: str, key: str, user: str, password: str | None) -> str:
    """The password in the file (one line; a trailing newline is not part of it). The file must be there."""
    if password is not None:
        raise UrlError(f"{path_key}: {key} has a password too: keep one of them")
    if not user:
        raise UrlError(f"{path_key}: {key} names no user (smtp[s]://USER@host)")
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise UrlError(f"{path_key}: cannot read {path!r} "
                       f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    if not value:
        raise UrlError(f"{path_key}: {path!r} is empty")
    return value
