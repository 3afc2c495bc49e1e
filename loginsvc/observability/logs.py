"""Structured JSON logs carrying the request id, cluster and node of every line."""
from __future__ import annotations

import contextvars
import json
import logging
import time
from typing import Any

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}
# Keys whose values must never be written, whatever a caller passes in `extra=`.
_SECRET_WORDS = ("password", "secret", "token", "session", "cookie", "authorization", "csrf")


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def install_record_factory() -> None:
    """Stamp every log record with the current request id when it is created, not when written.

    A handler may format a record later or elsewhere (a queue, a test's capture), after the
    request's context is gone.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "stamps_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id.get()
        if record.levelno > logging.WARNING and record.name.startswith("django.security"):
            _downgrade(record)
        return record

    factory.stamps_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What a caller passed in `extra=`, with fields named like secrets replaced."""
    return {key: "[redacted]" if _is_secret(key) else value for key, value in vars(record).items()
            if key not in _STANDARD and key != "request"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields named like secrets are replaced, never written."""

    def __init__(self, cluster: str = "", node: str = "") -> None:
        super().__init__()
        self.cluster, self.node = cluster, node

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "cluster": self.cluster,
            "node": self.node,
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _downgrade(record: logging.LogRecord) -> None:
    """Django logs a client's bad Host, oversized body, etc. as ERROR; for us that is a warning.

    Those records describe what a client sent, not a fault of ours, and an alert on ERROR lines
    (or a Sentry event) must not fire because someone sent garbage. Done when the record is made,
    so every handler, in any order, sees the same level.
    """
    record.levelno, record.levelname = logging.WARNING, "WARNING"
