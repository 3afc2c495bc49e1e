"""The service's own settings: one dict of documented defaults, each overridable from the environment."""
from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from sharedlib.networks import parse_ranges


@dataclass(frozen=True)
class Option:
    """One setting: its default, how to parse the environment string, and what it means."""

    default: Any
    parse: Callable[[str], Any]
    doc: str


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def normalise_origin(raw: str) -> str:
    """`https://Host:443/` → `https://host:443`; anything that is not a bare origin is refused."""
    text = raw.strip()
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.username or parts.password:
        raise ValueError(f"{text!r} is not an origin like https://host[:port]")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ValueError(f"{text!r} is not an origin like https://host[:port]")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _prefix_length(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 128:
        raise ValueError("must be between 1 and 128")
    return value


def parse_origins(raw: str) -> tuple[str, ...]:
    """Comma-separated origins, each trimmed and normalised; a bad one raises ValueError."""
    return tuple(normalise_origin(item) for item in raw.split(",") if item.strip())


def _one_of(*choices: str) -> Callable[[str], str]:
    """A parser that takes exactly one of `choices` (any case, trimmed)."""
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError("must be one of: " + ", ".join(choices))
        return value
    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be one of 1/0, true/false, yes/no, on/off")


def _text(raw: str) -> str:
    return raw.strip()


MFA_POLICIES = ("none", "staff", "all")


def _mfa_policy(raw: str) -> str:
    value = raw.strip().lower()
    if value not in MFA_POLICIES:
        raise ValueError(f"must be one of {', '.join(MFA_POLICIES)}")
    return value


def _rp_id(raw: str) -> str:
    """A WebAuthn relying party ID: a host name (no scheme, port or path; browsers refuse IP addresses)."""
    value = raw.strip().lower().rstrip(".")
    if not value:
        return ""
    labels = value.split(".")
    if not all(label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
               for label in labels) or labels[-1].isdigit():
        raise ValueError("must be a host name such as login.example.com (no scheme, port, path or IP address)")
    return value


def public_host(values: Mapping[str, Any]) -> str:
    """The issuer's host name, or "localhost" for a loopback address (local mode): what names this
    service where an IP address will not do (the passkeys' RP ID, the mail sender's domain)."""
    host = urlsplit(values["OIDC_ISSUER"]).hostname or ""
    return "localhost" if host in {"127.0.0.1", "::1"} else host


MAIL_SERVER_SCHEMES = {"imap": 143, "imaps": 993, "smtp": 587, "smtps": 465}


def mail_server(raw: str) -> tuple[str, str, int, bool]:
    """`imaps://mail.example.com`, `smtp://mail.example.com:587?starttls=1` → (scheme, host, port, starttls):
    where mail clients connect, as the autoconfig document and profiles name it."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in MAIL_SERVER_SCHEMES or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError("must be like imaps://host[:port], imap://host[:port][?starttls=1], smtps://… or smtp://…")
    if parts.username or parts.password or parts.query not in ("", "starttls=1") or parts.fragment:
        raise ValueError("only ?starttls=1 may follow the host (no credentials)")
    return parts.scheme, parts.hostname, parts.port or MAIL_SERVER_SCHEMES[parts.scheme], parts.query == "starttls=1"


def _mail_domains(raw: str) -> tuple[str, ...]:
    domains = tuple(d.strip().lower().rstrip(".") for d in raw.split(",") if d.strip())
    for domain in domains:
        if not domain.replace("-", "").replace(".", "").isalnum() or "." not in domain:
            raise ValueError(f"{domain!r} is not a domain name like example.com")
    return domains


def _mail_from(raw: str) -> str:
    name, address = parseaddr(raw)
    if not address or address.count("@") != 1 or "\n" in raw or "\r" in raw:
        raise ValueError("must be an address, e.g. Sign-in <no-reply@example.com>")
    return raw.strip()


def webauthn_party(values: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The passkeys' relying party ID and the origins allowed to use it, as configured or from the issuer.

    Browsers refuse an IP address as RP ID, so an issuer on a loopback address (local mode:
    http://127.0.0.1:8000) gives "localhost" and allows the same scheme and port on localhost too:
    passkeys work when the pages are opened as http://localhost:8000.
    """
    issuer = urlsplit(values["OIDC_ISSUER"])
    loopback = (issuer.hostname or "") in {"127.0.0.1", "::1"}
    rp_id = values["WEBAUTHN_RP_ID"] or public_host(values)
    origins = values["WEBAUTHN_ORIGINS"]
    if not origins:
        origins = (values["OIDC_ISSUER"],)
        if loopback:
            origins += (f"{issuer.scheme}://localhost" + (f":{issuer.port}" if issuer.port else ""),)
    for origin in origins:
        origin_host = urlsplit(origin).hostname or ""
        if origin_host in {"127.0.0.1", "::1"}:
            continue  # the issuer itself in local mode: browsers offer no passkeys there
        if origin_host != rp_id and not origin_host.endswith("." + rp_id):
            raise ImproperlyConfigured(f"{PREFIX}WEBAUTHN_RP_ID: {rp_id!r} is not {origin_host!r} or a parent "
                                       f"domain of it (the origin {origin} must be able to use it)")
    return rp_id, tuple(origins)


MAX_TEST_DELAY_MS = 60000


def parse_test_delay(raw: str) -> tuple[tuple[str, int], ...]:
    """`green-1=300,blue=150` → (("green-1", 300), ("blue", 150)): node or cluster names and milliseconds."""
    pairs: dict[str, int] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        target, equals, ms = (text.strip() for text in item.partition("="))
        if not equals or not target:
            raise ValueError(f"{item!r} is not TARGET=MS (a node or cluster name, then milliseconds)")
        digits = ms[1:] if ms.startswith("-") else ms
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"{item!r}: {ms!r} is not a whole number of milliseconds")
        value = int(ms)
        if not 0 <= value <= MAX_TEST_DELAY_MS:
            raise ValueError(f"{item!r}: milliseconds must be between 0 and {MAX_TEST_DELAY_MS}")
        if target in pairs:
            raise ValueError(f"{target!r} is given twice")
        pairs[target] = value
    return tuple(pairs.items())


# Every key can be set as an environment variable of the same name with the prefix LOGINSVC_.
OPTIONS: dict[str, Option] = {
    "CLUSTER": Option("local", _text, "Cluster name reported in X-Served-By, metrics and Sentry."),
    "NODE": Option(socket.gethostname(), _text, "Node name reported in X-Served-By, metrics and Sentry."),
    "RELEASE": Option("dev", _text, "Release tag reported in metrics and Sentry."),
    # OWASP: m=19 MiB t=2 p=1. Measured here, 32 MiB costs 2.8x the time (cache cliff): docs/security.md.
    "ARGON2_TIME_COST": Option(2, _positive_int, "Argon2id passes."),
    "ARGON2_MEMORY_COST": Option(19456, _positive_int, "Argon2id memory in KiB (19 MiB, the OWASP recommendation)."),
    "ARGON2_PARALLELISM": Option(1, _positive_int, "Argon2id lanes; 1 keeps one login on one core."),
    "SESSION_IDLE_SECONDS": Option(1800, _positive_int, "A session unused this long ends (Keycloak: 30 min)."),
    "SESSION_MAX_SECONDS": Option(36000, _positive_int, "A session ends this long after login (Keycloak: 10 h)."),
    "OFFLINE_IDLE_SECONDS": Option(2592000, _positive_int, "A refresh token of a sign-in granted offline_access (a "
                                   "mail client) that is not used this long stops working (30 days)."),
    "OFFLINE_MAX_SECONDS": Option(15552000, _positive_int, "A sign-in granted offline_access (a mail client) ends this "
                                  "long after the password was typed for it, however often it refreshes (180 days)."),
    "SESSION_TOUCH_SECONDS": Option(60, _positive_int, "Idle expiry is pushed forward at most this often, to spare writes."),
    "USER_CACHE_SECONDS": Option(5, _non_negative_int, "Longest a process reuses a session's user without a "
                                 "query, and only while its auth epoch is unchanged (0: never)."),
    "SESSION_FAST_PATH": Option(True, _bool, "Answer plain GET /api/session ahead of Django, same bytes (0: Django answers all)."),
    "SSO_FAST_PATH": Option(True, _bool, "Answer plain GET /oidc/userinfo/ and POST /oidc/introspect/ ahead of "
                            "Django, same bytes (0: Django answers all)."),
    "DB_PREPARE_THRESHOLD": Option(2, _non_negative_int, "PostgreSQL: the SSO reads of tokens, clients and sign-ins are prepared "
                                   "on the server from this run on one connection (0: never, e.g. behind "
                                   "PgBouncer < 1.21 in transaction mode); Django's own queries never are."),
    "ACCESS_LOG": Option(True, _bool, "One structured log line per request."),
    "ADMIN_ENABLED": Option(None, _bool, "Serve the account administration (Django's admin) at /admin/: staff with a "
                            "second factor only. Unset: on, except in production mode, where the nodes that serve "
                            "it should be reached from the ops network only."),
    "AUDIT_TRAIL_DAYS": Option(180, _positive_int, "Audit lines about accounts are also kept in the database this "
                               "many days, for the admin's audit trail of each account."),
    "LOCKOUT_THRESHOLD": Option(10, _positive_int, "Consecutive failures of one account from one IP before it locks."),
    "LOCKOUT_BASE_SECONDS": Option(60, _positive_int, "First cool-off; it doubles with each further failure."),
    "LOCKOUT_MAX_SECONDS": Option(900, _positive_int, "Longest cool-off (Keycloak: 15 min)."),
    "LOCKOUT_RESET_SECONDS": Option(43200, _positive_int, "Failure counts are forgotten after this long (Keycloak: 12 h)."),
    "IP_FAILURE_THRESHOLD": Option(50, _positive_int, "Failures from one IP (any accounts) before that IP is slowed."),
    "IP_WINDOW_SECONDS": Option(900, _positive_int, "Window in which the per-IP failures are counted."),
    "IPV6_PREFIX_LENGTH": Option(64, _prefix_length, "IPv6 clients are counted per network of this prefix length."),
    "IPV6_WIDE_PREFIX_LENGTH": Option(56, _prefix_length, "IPv6 clients are also counted per network of this (shorter) prefix length."),
    "IPV6_WIDE_FAILURE_THRESHOLD": Option(200, _positive_int, "Failures from one wide IPv6 network (any accounts) before it is slowed."),
    # Account-wide, across all addresses; enforced only against sources the account does not know.
    "ACCOUNT_DELAY_THRESHOLD": Option(20, _positive_int, "Failures of one account (all addresses) before its attempts from unknown sources are spaced out."),
    "ACCOUNT_DELAY_BASE_SECONDS": Option(1, _positive_int, "First spacing of those attempts; it doubles with each further failure."),
    "ACCOUNT_DELAY_MAX_SECONDS": Option(60, _positive_int, "Longest spacing of those attempts."),
    "ACCOUNT_FAILURE_LIMIT": Option(100, _positive_int, "Failures of one account after which only known devices and networks may sign in (ASVS 2.2.1: 100/h)."),
    "ACCOUNT_WINDOW_SECONDS": Option(3600, _positive_int, "Account-wide failures are forgotten this long after the last one; also the step-up cool-off."),
    "ACCOUNT_STEP_UP_CHECKS": Option(10, _positive_int, "During the step-up, how many passwords from unknown sources "
                                     "are still checked per window, so that one with a second factor can sign "
                                     "in with it at once; beyond them, unknown sources wait out the cool-off."),
    "KNOWN_SOURCE_SECONDS": Option(7776000, _positive_int, "A device or network stays known this long after its last sign-in (90 days)."),
    "LOGIN_NOTICE_SECONDS": Option(604800, _positive_int, "Failed attempts are reported at the next sign-in if it comes within this long."),
    "TRUSTED_PROXY_HOPS": Option(0, _non_negative_int, "How many X-Forwarded-For entries from the right are trusted."),
    "TRUSTED_PROXIES": Option(parse_ranges("127.0.0.0/8,::1/128"), parse_ranges,
                              "Comma-separated CIDRs of proxies whose X-Forwarded-* headers are believed (empty: none)."),
    "PRODUCT_ORIGINS": Option((), parse_origins, "Comma-separated origins that `next` may redirect to."),
    "READY_TIMEOUT_SECONDS": Option(0.25, _positive_float, "Per-dependency timeout of /readyz."),
    "READINESS_CACHE_SECONDS": Option(0.25, _positive_float, "How long a node reuses its last /readyz result."),
    "METRICS_TOKEN": Option("", _text, "Bearer token for /metrics from non-loopback clients (empty: loopback only)."),
    "JSON_LOGS": Option(True, _bool, "One JSON object per log line."),
    # --- Second factors (loginsvc/mfa, docs/security.md) ---
    "MFA_KEY_FILE": Option("", _text, "The key that seals authenticator-app secrets and keys recovery-code digests "
                           "(32 random bytes, base64), the same on every node; empty: var/mfa-key, generated "
                           "once (local mode only)."),
    "MFA_PENDING_SECONDS": Option(300, _positive_int, "How long a correct password waits for its second factor."),
    "MFA_REQUIRED": Option("none", _mfa_policy, "Who must have a second factor: none, staff (staff accounts) or "
                           "all; after the grace period, products give such a user codes only for multi-factor "
                           "sign-ins, and one without a factor is led to set one up."),
    "MFA_GRACE_SECONDS": Option(604800, _non_negative_int, "How long a user the policy covers may still sign in "
                                "to products with the password alone, from the first sign-in that told them (7 days)."),
    "WEBAUTHN_RP_ID": Option("", _rp_id, "The passkeys' relying party ID: a host name, the issuer's or a parent "
                             "domain of it; empty: the issuer's host (localhost for a loopback issuer). "
                             "Changing it orphans every registered passkey."),
    "WEBAUTHN_ORIGINS": Option((), parse_origins, "Comma-separated origins whose pages may use passkeys; empty: "
                               "the issuer's origin (and the same port on localhost for a loopback issuer)."),
    "WEBAUTHN_CHALLENGE_SECONDS": Option(120, _positive_int, "A passkey ceremony must finish this long after "
                                         "it starts; its challenge then works once."),
    "PASSKEY_OPTIONS_IP_REQUESTS": Option(120, _positive_int, "Passkey ceremonies (POST /api/passkey/options) one "
                                          "client network may start per minute; beyond, 429 with Retry-After."),
    # --- Single sign-on (loginsvc/sso, docs/sso.md) ---
    "OIDC_ISSUER": Option("http://127.0.0.1:8000", normalise_origin,
                          "The provider's public origin: the router's, never a node's (the iss of every token)."),
    "OIDC_KEY_FILE": Option("", _text, "Signing keys (JSON key ring or one PEM) shared by every node; "
                            "empty: var/oidc-keys.json, generated once (local mode only)."),
    "OIDC_KEY_PUBLISH_SECONDS": Option(60, _non_negative_int, "A rotated-in key is published in the JWKS this long "
                                       "before it signs, so every product's cached JWKS knows it first."),
    "OIDC_KEY_RELOAD_SECONDS": Option(5, _positive_int, "How often a process looks at the key file for a rotation."),
    "AUTH_CODE_SECONDS": Option(60, _positive_int, "An authorization code is redeemable this long, once."),
    "ACCESS_TOKEN_SECONDS": Option(600, _positive_int, "Lifetime of access tokens (and ID tokens)."),
    "REFRESH_RETRY_SECONDS": Option(10, _non_negative_int, "A confidential product or a mail client that presents "
                                    "a refresh token again this soon after rotating it (a retry after a lost answer "
                                    "or a failover) gets the same new pair; later, or any other client, is a replay "
                                    "that revokes the family (0: every reuse is a replay)."),
    "BACKCHANNEL_TIMEOUT_SECONDS": Option(3.0, _positive_float, "Timeout of one back-channel logout delivery."),
    "BACKCHANNEL_MAX_BACKOFF_SECONDS": Option(300, _positive_int, "Longest wait between two deliveries of one logout."),
    "BACKCHANNEL_GIVE_UP_SECONDS": Option(86400, _positive_int, "A logout not delivered this long after the "
                                          "logout is dropped (logged): the product's own sessions have ended by then."),
    "RECOVERY_CODE_SECONDS": Option(900, _positive_int, "A mailed recovery code works this long, once, in the "
                                    "browser that asked for it."),
    "RECOVERY_CODE_TRIES": Option(5, _positive_int, "Wrong entries of one recovery code before it stops working."),
    "RECOVERY_CODES_PER_HOUR": Option(5, _positive_int, "Recovery codes mailed per address per hour; beyond, "
                                      "asking gets the same answer and no mail."),
    "RECOVERY_IP_REQUESTS": Option(20, _positive_int, "Recovery codes one client network may ask for per hour "
                                   "(any addresses); beyond, 429 with Retry-After."),
    "MAIL_FROM": Option("", _mail_from, "The sender of mail to account holders (default: Sign-in "
                        "<no-reply@ the issuer's host>)."),
    "MAIL_TIMEOUT_SECONDS": Option(10.0, _positive_float, "Timeout of each step of one SMTP delivery."),
    "MAIL_MAX_BACKOFF_SECONDS": Option(300, _positive_int, "Longest wait between two attempts at one message."),
    "MAIL_GIVE_UP_SECONDS": Option(86400, _positive_int, "A message not delivered this long after it was "
                                   "written is given up: kept as failed (`manage.py mail_outbox --failed`), "
                                   "counted in loginsvc_mail_total{result=\"failed\"}, alerted on."),
    "MAIL_DOMAINS": Option((), _mail_domains, "Comma-separated mail domains whose mail clients find their settings "
                           "here (Thunderbird's autoconfig); none: no autoconfig document."),
    "IMAP_SERVER": Option(("imap", "127.0.0.1", 1143, False), mail_server, "Where mail clients read mail, as "
                          "imaps://host[:port] or imap://host[:port][?starttls=1] (default: make up's Dovecot)."),
    "SUBMISSION_SERVER": Option(("smtp", "127.0.0.1", 1587, False), mail_server, "Where mail clients send mail, "
                                "as smtps://host[:port] or smtp://host[:port][?starttls=1] (default: make up's Dovecot)."),
    "MAIL_ACCOUNT_PASSWORD": Option("refuse", _one_of("refuse", "allow"), "Whether a mail client (IMAP, SMTP) may log "
                                    "in with the account's own password: refuse (app passwords and OAuth only) or "
                                    "allow (then only for accounts without a second factor)."),
    "MAIL_CLIENTS": Option(("mail-client",), lambda raw: tuple(c.strip() for c in raw.split(",") if c.strip()),
                           "Comma-separated client ids that may ask for the scopes mail (IMAP and SMTP with the "
                           "token) and offline_access (refresh tokens for months): the mail clients' products."),
    "DEVICE_CODE_SECONDS": Option(600, _positive_int, "A device authorization (a mail client without a browser, "
                                  "RFC 8628) waits this long for its user code to be entered at /device."),
    "DEVICE_IP_REQUESTS": Option(60, _positive_int, "Device authorizations one client network may start per hour; "
                                 "beyond, 429 with Retry-After."),
    "MAIL_SERVER_CLIENT": Option("dovecot", _text, "The client id of the mail server, the one confidential client "
                                 "that may ask POST /api/mail/check whether a mail client's login is right."),
    # --- Tests only (loginsvc/delay.py); refused in production ---
    "TEST_DELAY": Option((), parse_test_delay, "Comma-separated TARGET=MS: every answer of the node named TARGET "
                         "(or of each node of cluster TARGET; a node's own entry wins) waits MS milliseconds "
                         "(0-60000), probes excepted. Load and canary tests only; refused in production."),
}

PREFIX = "LOGINSVC_"
ROOT = Path(__file__).resolve().parent.parent


def var_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where local state lives: LOGINSVC_VAR_DIR, or var/ in the checkout (what `make up` uses)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(PREFIX + "VAR_DIR") or ROOT / "var").resolve()


def load(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every option from the environment; a bad value raises one message naming the key."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for key, option in OPTIONS.items():
        raw = environ.get(PREFIX + key)
        if raw is None:
            values[key] = option.default
            continue
        try:
            values[key] = option.parse(raw)
        except (ValueError, ImproperlyConfigured) as exc:
            reason = str(exc) if not str(exc).startswith("invalid literal") else "is not a number"
            raise ImproperlyConfigured(f"{PREFIX}{key}: {reason} (got {raw!r})") from None
    if values["IPV6_WIDE_PREFIX_LENGTH"] > values["IPV6_PREFIX_LENGTH"]:
        raise ImproperlyConfigured(
            f"{PREFIX}IPV6_WIDE_PREFIX_LENGTH: must not be longer than {PREFIX}IPV6_PREFIX_LENGTH"
        )
    if values["SESSION_MAX_SECONDS"] < values["SESSION_IDLE_SECONDS"]:
        raise ImproperlyConfigured(
            f"{PREFIX}SESSION_MAX_SECONDS: must not be shorter than {PREFIX}SESSION_IDLE_SECONDS"
        )
    if values["OFFLINE_MAX_SECONDS"] < values["OFFLINE_IDLE_SECONDS"]:
        raise ImproperlyConfigured(
            f"{PREFIX}OFFLINE_MAX_SECONDS: must not be shorter than {PREFIX}OFFLINE_IDLE_SECONDS"
        )
    webauthn_party(values)
    return values


def get(key: str) -> Any:
    """One option as configured for this process (settings.LOGINSVC, which tests may override)."""
    from django.conf import settings

    return settings.LOGINSVC[key]
