"""Delivering the mail outbox over SMTP, with the outbox machinery the back-channel logouts use (loginsvc/outbox.py).

One attempt hands one message to the SMTP server of EMAIL_URL (smtp.py); a message meant only for an
account (a recovery code) whose address has none is dropped unsent instead, here, so that the request
that asked for it did the same work either way. The server's word decides
what follows: accepted is delivered; a permanent refusal of the message (a 5xx reply to its recipient
or its data: no such mailbox, content policy) is given up at once, since asking again gets the same
answer; anything else (connection refused, a timeout, a 4xx reply, a refused login or sender, which
ops can mend, EMAIL_URL not set) is retried with back-off, and after one such failure the
rest of the pass waits, since every message goes to the same server. A message not delivered
MAIL_GIVE_UP_SECONDS after it was written is given up too. Given up is not forgotten: the row stays
as failed for ops (`manage.py mail_outbox --failed`, `python -m deploy mail --failed`), is counted in
`loginsvc_mail_total{result="failed"}` and raises the alert LoginMailFailed.
"""
from __future__ import annotations

import logging
import smtplib
import threading
from datetime import datetime, timedelta
from email.utils import make_msgid
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils import timezone

from loginsvc import conf, outbox
from loginsvc.accounts.models import User
from loginsvc.mail import messages, smtp
from loginsvc.mail.models import OutgoingMail
from loginsvc.observability.metrics import MAIL

log = logging.getLogger("loginsvc.mail")
KEEP_DELIVERED = timedelta(days=1)
KEEP_FAILED = timedelta(days=30)


def _permanent(exc: Exception) -> bool:
    """A 5xx reply to this message's recipient or its data: the server will not take this message. A 5xx
    to the login or the sender is about our set-up, not the message: mended, the message goes (retried)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPDataError) and 500 <= exc.smtp_code < 600


def _error(exc: Exception) -> str:
    """Short, and without what the server echoed of our credentials or the message."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.smtp_code}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return f"{type(exc).__name__}: " + ", ".join(str(code) for code, _ in exc.recipients.values())
    return f"{type(exc).__name__}: {exc}"[:200]


def email_of(row: OutgoingMail) -> EmailMultiAlternatives:
    message = messages.opened(row)
    email = EmailMultiAlternatives(message.subject, message.text, settings.DEFAULT_FROM_EMAIL, [row.to], headers={
        "Message-ID": make_msgid(domain=conf.public_host(settings.LOGINSVC)),
        "Auto-Submitted": "auto-generated",  # RFC 3834: no vacation replies to this
    })
    email.attach_alternative(message.html, "text/html")
    return email


def _deliver(row: OutgoingMail, now: datetime) -> outbox.Attempted:
    if row.needs_account and not User.objects.filter(email=row.to, is_active=True).exists():
        MAIL.labels("skipped").inc()  # e.g. a recovery code asked for an address without an account
        OutgoingMail.objects.filter(pk=row.pk).update(sealed=b"")
        return outbox.Attempted(outbox.Result.DELIVERED, log_fields={"sent": False})
    server = settings.EMAIL_SERVER
    if server is None:
        MAIL.labels("retried").inc()
        return outbox.Attempted(outbox.Result.RETRY, "EMAIL_URL is not set")
    try:
        smtp.backend(server).send_messages([email_of(row)])
    except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timeout, TLS, a reply
        if _permanent(exc):
            return outbox.Attempted(outbox.Result.FAILED, _error(exc))  # counted by _give_up
        MAIL.labels("retried").inc()
        return outbox.Attempted(outbox.Result.RETRY, _error(exc))
    MAIL.labels("delivered").inc()
    OutgoingMail.objects.filter(pk=row.pk).update(sealed=b"")  # delivered: no copy of the text stays
    return outbox.Attempted(outbox.Result.DELIVERED)


def _fields(row: OutgoingMail) -> dict[str, Any]:
    return {"mail_id": row.pk, "kind": row.kind, "attempts": row.attempts}


def _give_up(row: OutgoingMail, now: datetime, error: str) -> None:
    """Keep the row as failed, never due again; counted and logged for ops."""
    OutgoingMail.objects.filter(pk=row.pk).update(failed=now, next_attempt=None, claimed_until=None)
    MAIL.labels("failed").inc()
    log.warning("mail: given up", extra={**_fields(row), "age_seconds": int((now - row.created).total_seconds()),
                                         "last_error": error})


def purge(now: datetime | None = None) -> int:
    """Delete rows delivered more than a day ago and failed ones after 30 days; how many."""
    now = now or timezone.now()
    old = OutgoingMail.objects.filter(delivered__lt=now - KEEP_DELIVERED)
    return old.delete()[0] + OutgoingMail.objects.filter(failed__lt=now - KEEP_FAILED).delete()[0]


MAIL_OUTBOX = outbox.Outbox(
    name="mail", model=OutgoingMail, deliver=_deliver, give_up=_give_up,
    give_up_seconds=lambda: conf.get("MAIL_GIVE_UP_SECONDS"),
    max_backoff_seconds=lambda: conf.get("MAIL_MAX_BACKOFF_SECONDS"),
    attempt_seconds=lambda: 4 * float(conf.get("MAIL_TIMEOUT_SECONDS")),  # connect, TLS, the dialogue, quit
    # Every message kicks its thread at commit; polling finds only retries, whose back-off is seconds to
    # minutes: every 5 s keeps an idle node's extra work small (a restarted node serves first).
    log=log, log_fields=_fields, tidy=purge, poll_seconds=5.0)


def run(now: datetime | None = None, stopping: threading.Event | None = None) -> outbox.Counts:
    return outbox.run(MAIL_OUTBOX, now, stopping)


def deliver_due(now: datetime | None = None) -> int:
    """Deliver every due message now, in this thread (tests, the command); how many were delivered."""
    purge(now)
    return run(now).delivered


def retry_failed() -> int:
    """Make every failed message due again, its give-up time counted from now; how many."""
    return OutgoingMail.objects.filter(failed__isnull=False).update(
        failed=None, next_attempt=timezone.now(), created=timezone.now(), attempts=0, last_error="")


_worker = outbox.Worker(MAIL_OUTBOX)


def start() -> None:
    """Run this process's mail thread (gunicorn's post_worker_init): kick() works from now on."""
    _worker.start()


def stop(timeout: float | None = None) -> bool:
    return _worker.stop(timeout)


def kick() -> None:
    """A message was just committed: deliver it soon (a no-op where start() was never called)."""
    _worker.kick()
