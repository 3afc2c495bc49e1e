"""Where alerts go: webhooks, email over SMTP, Sentry; each independent, each with its own circuit breaker.

Configured from the environment (docs/router.md "Alerts"): ALERT_WEBHOOK_URL (comma-separated),
ALERT_SMTP_URL (smtp://host:port) with ALERT_EMAIL_TO (comma-separated) and ALERT_EMAIL_FROM,
SENTRY_DSN. A delivery runs in a thread (urllib, smtplib, sentry-sdk are blocking) with a timeout,
and returns (ok, error, retry_after): a 429 or 503 with Retry-After is honoured.
"""
from __future__ import annotations

import abc
import datetime
import email.message
import json
import os
import smtplib
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 5.0
BREAKER_FAILURES = 5          # consecutive failures that open a pipeline's breaker ...
BREAKER_SECONDS = 30.0        # ... for this long; then one delivery is let through (half-open)

Result = tuple[bool, str, float | None]


class PipelineError(ValueError):
    """A bad pipeline setting: one line naming the variable."""


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


@dataclass
class Pipeline(abc.ABC):
    """One destination and its breaker. `name` is stable across restarts (it keys the outbox); each kind of
    destination (Webhook, Email, Sentry) says how it delivers."""

    name: str
    failures: int = 0
    open_until: float = 0.0
    refused: list[float] = field(default_factory=list)   # failure times, for "refused 5 alerts in 2 min"

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

    @abc.abstractmethod
    def deliver(self, alert: Mapping[str, Any]) -> Result:
        """Send one alert: (delivered, error text, seconds the destination asked us to wait or None)."""


@dataclass
class Webhook(Pipeline):
    url: str = ""

    def deliver(self, alert: Mapping[str, Any]) -> Result:
        request = urllib.request.Request(self.url, data=json.dumps(webhook_body(alert)).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "canary-alerts"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                response.read(65536)
            return True, "", None
        except urllib.error.HTTPError as exc:
            wait = retry_after(exc.headers.get("Retry-After")) if exc.code in (429, 503) else None
            return False, f"HTTP {exc.code}", wait
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return False, str(getattr(exc, "reason", exc))[:200], None


@dataclass
class Email(Pipeline):
    host: str = ""
    port: int = 25
    to: tuple[str, ...] = ()
    sender: str = "canary-alerts@localhost"

    def deliver(self, alert: Mapping[str, Any]) -> Result:
        message = email.message.EmailMessage()
        message["Subject"] = f"[canary {alert['severity']}] {alert['text']}"[:200]
        message["From"], message["To"] = self.sender, ", ".join(self.to)
        message.set_content(text_of(alert) + "\n\n" + json.dumps(webhook_body(alert)["alerts"][0], indent=1))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=TIMEOUT) as smtp:
                smtp.send_message(message)
            return True, "", None
        except (smtplib.SMTPException, OSError) as exc:
            return False, str(exc)[:200], None


@dataclass
class Sentry(Pipeline):
    dsn: str = ""

    def deliver(self, alert: Mapping[str, Any]) -> Result:
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


def from_environment(environ: Mapping[str, str] | None = None) -> list[Pipeline]:
    """Every pipeline the environment names; a bad value raises PipelineError naming the variable."""
    env = os.environ if environ is None else environ
    pipelines: list[Pipeline] = []
    for url in (u.strip() for u in env.get("ALERT_WEBHOOK_URL", "").split(",") if u.strip()):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PipelineError(f"ALERT_WEBHOOK_URL: {url!r} is not an http(s) URL")
        pipelines.append(Webhook(name=f"webhook {parts.hostname}:{parts.port or ''}{parts.path}", url=url))
    smtp = env.get("ALERT_SMTP_URL", "").strip()
    if smtp:
        parts = urlsplit(smtp)
        if parts.scheme != "smtp" or not parts.hostname:
            raise PipelineError(f"ALERT_SMTP_URL: {smtp!r} is not like smtp://host:port")
        to = tuple(a.strip() for a in env.get("ALERT_EMAIL_TO", "").split(",") if a.strip())
        if not to or not all("@" in a for a in to):
            raise PipelineError("ALERT_EMAIL_TO: one or more addresses, comma-separated, are needed with ALERT_SMTP_URL")
        pipelines.append(Email(name=f"email {parts.hostname}:{parts.port or 25}", host=parts.hostname,
                               port=parts.port or 25, to=to,
                               sender=env.get("ALERT_EMAIL_FROM", "").strip() or "canary-alerts@localhost"))
    if env.get("SENTRY_DSN", "").strip():
        pipelines.append(Sentry(name="sentry", dsn=env["SENTRY_DSN"].strip()))
    return pipelines
