"""Where alerts go: webhooks, email over SMTP, Sentry; each independent, each with its own circuit breaker.

The settings (ALERT_WEBHOOK_URL, ALERT_SMTP_URL, SENTRY_DSN, ...) are read by canary/alerts/settings.py. A
delivery runs in a thread (urllib, smtplib, sentry-sdk are blocking) with a timeout, and returns (ok, error,
retry_after): a 429 or 503 with Retry-After is honoured. A pipeline's URL may hold a secret (a Slack
webhook's path, credentials), so a pipeline is known by a name that holds none, and every error text it
returns is scrubbed of its secrets: names and errors reach logs, other pipelines' alerts and the admin API.
"""
from __future__ import annotations

import abc
import datetime
import email.message
import hashlib
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

TIMEOUT = 5.0
BREAKER_FAILURES = 5          # consecutive failures that open a pipeline's breaker ...
BREAKER_SECONDS = 30.0        # ... for this long; then one delivery is let through (half-open)
ERROR_LENGTH = 200
HIDDEN = "[hidden]"           # what stands in an error text where a pipeline's secret was

Result = tuple[bool, str, float | None]


class PipelineError(ValueError):
    """A bad pipeline setting: one line naming the variable and the problem, never the value (it may be secret)."""


def retry_after(value: str | None) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def fingerprint(text: str) -> str:
    """8 hex digits of SHA-256: tells two destinations on one host apart in a pipeline's name, the same on every
    router and after every restart (the outbox keys deliveries by name). 32 bits of a hash cannot be turned back
    into the random token of a webhook URL; passwords are left out of what is hashed (settings.py)."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _iso(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def webhook_body(alert: Mapping[str, Any]) -> dict[str, Any]:
    """One JSON body for Slack-style incoming webhooks (`text`) and Alertmanager-style receivers (`alerts`)."""
    labels = {"alertname": alert["kind"], "severity": alert["severity"]}
    labels.update({k: alert[k] for k in ("cluster", "node") if alert.get(k)})
    return {"text": text_of(alert), "status": "firing", "receiver": "canary", "groupKey": alert["fold_key"],
            "alerts": [{"status": "firing", "labels": labels, "startsAt": _iso(alert["at"]),
                        "annotations": {"summary": alert["text"], "figures": json.dumps(alert.get("figures", {})),
                                        "count": str(alert.get("count", 1))},
                        "fingerprint": alert["id"]}]}


def text_of(alert: Mapping[str, Any]) -> str:
    where = "/".join(p for p in (alert.get("cluster"), alert.get("node")) if p)
    figures = ", ".join(f"{k} {v}" for k, v in (alert.get("figures") or {}).items())
    repeated = f" (x{alert['count']})" if alert.get("count", 1) > 1 else ""
    return (f"[{alert['severity']}] {alert['text']}{repeated}" + (f" — {where}" if where else "")
            + f" at {_iso(alert['at'])}" + (f" ({figures})" if figures else ""))


def describe(exc: BaseException) -> str:
    """One line for a failed delivery: the SMTP reply, or the exception's kind and text (urllib's URLError is
    unwrapped to its reason). Still to be scrubbed: a client library may quote the URL or host it was given."""
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"SMTP {exc.smtp_code} {reply}"
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return describe(reason) if isinstance(reason, BaseException) else str(reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass
class Pipeline(abc.ABC):
    """One destination and its breaker. `name` is stable across restarts (it keys the outbox) and holds no
    secret; `secrets` are the strings never to show (scrubbed from every error); `legacy_names` are the names
    an older version gave the same destination, which the outbox is migrated from (alerting.py). Each kind of
    destination (Webhook, Email, Sentry) says how it sends."""

    name: str
    failures: int = 0
    open_until: float = 0.0
    refused: list[float] = field(default_factory=list)   # failure times, for "refused 5 alerts in 2 min"
    secrets: tuple[str, ...] = field(default=(), repr=False)
    legacy_names: tuple[str, ...] = field(default=(), repr=False)

    def usable(self, now: float) -> bool:
        return now >= self.open_until

    def record(self, ok: bool, now: float) -> None:
        if ok:
            self.failures, self.open_until = 0, 0.0
            return
        self.failures += 1
        self.refused = [t for t in self.refused if now - t < 120.0] + [now]
        if self.failures >= BREAKER_FAILURES:
            self.open_until = now + BREAKER_SECONDS

    @property
    def breaker(self) -> str:
        return "open" if self.failures >= BREAKER_FAILURES else "closed"

    def scrub(self, text: str) -> str:
        """`text` with every secret of this pipeline replaced (longest first, so a URL goes before its path)."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, HIDDEN)
        return text

    def deliver(self, alert: Mapping[str, Any]) -> Result:
        """Send one alert: (delivered, error text, seconds the destination asked us to wait or None). Any failure
        of a client library is this pipeline's failure, described and scrubbed, never the delivery loop's."""
        try:
            ok, error, wait = self.send(alert)
        except Exception as exc:  # noqa: BLE001 - urllib, smtplib, ssl, sentry-sdk: each has its own kinds
            ok, error, wait = False, describe(exc), None
        return ok, self.scrub(error)[:ERROR_LENGTH], wait

    @abc.abstractmethod
    def send(self, alert: Mapping[str, Any]) -> Result:
        """Send one alert; may raise (deliver() turns that into a failure)."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook's 3xx is its answer, not an instruction: following it would POST the alert to a destination
    nobody configured (and a proxy or a compromised receiver could send it anywhere). urllib then raises
    HTTPError for the 3xx, which is reported as a failure."""

    def http_error_302(self, req: Any, fp: Any, code: int, msg: str, headers: Any) -> None:  # noqa: ARG002
        return None

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_NoRedirects)


@dataclass
class Webhook(Pipeline):
    url: str = field(default="", repr=False)             # without its userinfo, which goes in `authorization`
    authorization: str = field(default="", repr=False)   # HTTP Basic from the URL's user:password, or ""

    def send(self, alert: Mapping[str, Any]) -> Result:
        headers = {"Content-Type": "application/json", "User-Agent": "canary-alerts"}
        if self.authorization:
            headers["Authorization"] = self.authorization
        request = urllib.request.Request(self.url, data=json.dumps(webhook_body(alert)).encode(), method="POST",
                                         headers=headers)
        try:
            with _OPENER.open(request, timeout=TIMEOUT) as response:
                response.read(65536)
            return True, "", None
        except urllib.error.HTTPError as exc:
            exc.close()
            if 300 <= exc.code < 400:
                return False, f"HTTP {exc.code}: a redirect, not followed", None
            wait = retry_after(exc.headers.get("Retry-After")) if exc.code in (429, 503) else None
            return False, f"HTTP {exc.code}", wait


@dataclass
class Email(Pipeline):
    """SMTP as ALERT_SMTP_URL says: plain (`smtp://`), STARTTLS required (`?starttls=1`: no server offer, no
    mail) or implicit TLS (`smtps://`); AUTH only ever inside TLS (settings.py refuses it otherwise)."""

    host: str = ""
    port: int = 25
    to: tuple[str, ...] = ()
    sender: str = "canary-alerts@localhost"
    tls: str = "none"                                     # "none", "starttls" or "implicit"
    user: str = ""
    password: str = field(default="", repr=False)
    context: ssl.SSLContext | None = field(default=None, repr=False)

    def send(self, alert: Mapping[str, Any]) -> Result:
        message = email.message.EmailMessage()
        message["Subject"] = f"[canary {alert['severity']}] {alert['text']}"[:200]
        message["From"], message["To"] = self.sender, ", ".join(self.to)
        message.set_content(text_of(alert) + "\n\n" + json.dumps(webhook_body(alert)["alerts"][0], indent=1))
        smtp = (smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT, context=self.context)
                if self.tls == "implicit" else smtplib.SMTP(self.host, self.port, timeout=TIMEOUT))
        with smtp:
            if self.tls == "starttls":
                smtp.ehlo()
                if not smtp.has_extn("starttls"):   # never fall back to plain: not the credentials, not the alert
                    return False, "the server does not offer STARTTLS: nothing sent", None
                smtp.starttls(context=self.context)
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(message)
        return True, "", None


@dataclass
class Sentry(Pipeline):
    dsn: str = field(default="", repr=False)

    def send(self, alert: Mapping[str, Any]) -> Result:
        import sentry_sdk

        if not sentry_sdk.is_initialized():  # the router reports nothing else to Sentry: alerts only
            sentry_sdk.init(dsn=self.dsn, default_integrations=False, send_default_pii=False)

        with sentry_sdk.new_scope() as scope:
            for key in ("kind", "cluster", "node", "severity"):
                if alert.get(key):
                    scope.set_tag(key, alert[key])
            scope.set_context("alert", {"figures": alert.get("figures", {}), "count": alert.get("count", 1)})
            event_id = sentry_sdk.capture_message(text_of(alert), level="error" if alert["severity"] == "critical"
                                                  else "warning", scope=scope)
        flushed = sentry_sdk.flush(timeout=TIMEOUT)
        return (event_id is not None and flushed is not False), ("" if event_id else "Sentry dropped the event"), None
