"""Mail through the outbox to a real SMTP server (aiosmtpd): written with its change, delivered once, never lost.

Every test here talks SMTP to a real aiosmtpd server on a free port (plain, STARTTLS and implicit TLS
with a private CA), through Django's email machinery, as a node would.
"""
from __future__ import annotations

import email
import re
import threading
import time
from datetime import timedelta
from email import policy
from io import StringIO
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from deploy.node import free_port
from loginsvc.mail import delivery, messages, smtp
from loginsvc.mail.models import OutgoingMail
from loginsvc.observability.metrics import MAIL
from tests.canary.alert_receivers import SMTP_PASSWORD, SMTP_USER, make_ca, smtp_server
from tests.conftest import PASSWORD
from tests.support import Mailbox


def _parsed(raw: str) -> email.message.EmailMessage:
    return email.message_from_string(raw, policy=policy.default)  # type: ignore[return-value]


def _notice(to: str = "ann@example.test") -> OutgoingMail:
    return messages.queue("mfa_reset", to, {"email": to, "when": "2026-12-06 23:00"})


@pytest.mark.django_db
def test_a_message_goes_with_its_change_or_not_at_all(mailbox: Mailbox) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        _notice()
        raise RuntimeError("the change failed")
    assert not OutgoingMail.objects.exists() and delivery.deliver_due() == 0 and mailbox.messages == []


@pytest.mark.django_db
def test_rfc5322_text_and_html_from_the_service_reach_the_server_once(mailbox: Mailbox, settings: Any) -> None:
    row = _notice()
    assert delivery.deliver_due() == 1 and delivery.deliver_due() == 0
    [raw] = mailbox.messages
    message = _parsed(raw)
    assert message["To"] == "ann@example.test" and message["Auto-Submitted"] == "auto-generated"
    assert message["From"] == settings.DEFAULT_FROM_EMAIL == "Sign-in <no-reply@localhost>"
    assert message["Subject"] == "Your second factors were removed from your localhost account"
    assert message["Message-ID"].endswith("@localhost>") and message.get_content_type() == "multipart/alternative"
    text, html = (message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content())
    assert "ann@example.test" in text and "2026-12-06 23:00" in text and "<strong>ann@example.test</strong>" in html
    fresh = OutgoingMail.objects.get(pk=row.pk)
    assert fresh.delivered and fresh.attempts == 1 and bytes(fresh.sealed) == b""  # no copy of the text stays


@pytest.mark.django_db
def test_links_go_only_to_the_public_origin_and_no_secret_is_in_the_text(mailbox: Mailbox, settings: Any) -> None:
    settings.LOGINSVC = dict(settings.LOGINSVC, OIDC_ISSUER="https://login.example.com")
    _notice()
    delivery.deliver_due()
    message = _parsed(mailbox.messages[0])
    for part in (message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()):
        links = re.findall(r"https?://[^\s\"<>]+", part)
        assert links and all(link.startswith("https://login.example.com/") for link in links), links
        assert PASSWORD not in part and settings.SECRET_KEY not in part


@pytest.mark.django_db
def test_at_rest_the_message_is_sealed(mailbox: Mailbox) -> None:
    row = _notice()
    stored = bytes(OutgoingMail.objects.get(pk=row.pk).sealed)
    assert b"ann@example.test" not in stored and b"second factor" not in stored
    assert "ann@example.test" in messages.opened(row).text


@pytest.mark.django_db
def test_smtp_down_while_a_notice_is_due_then_back_delivers_it_once(settings: Any, user: Any) -> None:
    port = free_port()  # nothing listens yet
    settings.EMAIL_SERVER = smtp.parse(f"smtp://127.0.0.1:{port}")
    call_command("mfa_reset", user.email, stdout=StringIO())
    [row] = OutgoingMail.objects.all()
    now = timezone.now()
    assert delivery.deliver_due(now) == 0
    failing = OutgoingMail.objects.get(pk=row.pk)
    assert failing.attempts == 1 and "ConnectionRefused" in failing.last_error and not failing.delivered
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert delivery.deliver_due(now) == 0                            # still backing off: not due yet
        later = now + timedelta(seconds=2)
        assert delivery.deliver_due(later) == 1 and delivery.deliver_due(later + timedelta(hours=1)) == 0
    finally:
        controller.stop()
    [raw] = box.messages
    assert _parsed(raw)["To"] == user.email and "removed every second factor" in raw


class Refusing(Mailbox):
    """A server that knows no such mailbox (550) for every recipient."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802 - aiosmtpd's
                          rcpt_options: list[str]) -> str:
        return "550 5.1.1 no such mailbox"


@pytest.mark.django_db
def test_a_permanent_refusal_is_given_up_at_once_counted_and_listed_for_ops(settings: Any) -> None:
    port = free_port()
    controller = Controller(Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_SERVER = smtp.parse(f"smtp://127.0.0.1:{port}")
    before = MAIL.labels("failed")._value.get()
    try:
        row = _notice("gone@example.test")
        counts = delivery.run()
    finally:
        controller.stop()
    assert (counts.delivered, counts.dropped, counts.retried) == (0, 1, 0)
    failed = OutgoingMail.objects.get(pk=row.pk)
    assert failed.failed and failed.next_attempt is None and failed.last_error == "SMTPRecipientsRefused: 550"
    assert MAIL.labels("failed")._value.get() == before + 1
    out = StringIO()
    call_command("mail_outbox", "--failed", stdout=out)
    assert f"#{row.pk}" in out.getvalue() and "gone@example.test" in out.getvalue() and "550" in out.getvalue()
    assert "second factor" not in out.getvalue()                          # ops see who and why, not the text
    call_command("mail_outbox", "--retry-failed", stdout=StringIO())
    assert OutgoingMail.objects.get(pk=row.pk).failed is None and delivery.MAIL_OUTBOX.model.objects.filter(
        next_attempt__isnull=False, pk=row.pk).exists()


@pytest.mark.django_db
def test_a_message_not_delivered_within_the_give_up_time_is_kept_as_failed(settings: Any) -> None:
    settings.EMAIL_SERVER = smtp.parse(f"smtp://127.0.0.1:{free_port()}")
    row = _notice()
    OutgoingMail.objects.filter(pk=row.pk).update(created=timezone.now() - timedelta(days=1, seconds=1))
    assert delivery.run().dropped == 1
    assert OutgoingMail.objects.get(pk=row.pk).failed and not delivery.outbox.anything_due(delivery.MAIL_OUTBOX)
    status = StringIO()
    call_command("mail_outbox", "--json", stdout=status)
    assert '"failed": 1' in status.getvalue()


@pytest.mark.django_db
def test_without_email_url_messages_wait_in_the_outbox(settings: Any) -> None:
    settings.EMAIL_SERVER = None
    row = _notice()
    assert delivery.run().retried == 1
    waiting = OutgoingMail.objects.get(pk=row.pk)
    assert waiting.last_error == "EMAIL_URL is not set" and not waiting.failed and waiting.next_attempt


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
@pytest.mark.django_db
def test_tls_with_credentials_and_a_private_ca(mode: str, settings: Any, tmp_path: Any) -> None:
    ca = make_ca(tmp_path)
    with smtp_server(mode, ca) as (recorder, port):
        scheme, option = ("smtp", "&starttls=1") if mode == "starttls" else ("smtps", "")
        settings.EMAIL_SERVER = smtp.parse(
            f"{scheme}://{SMTP_USER}:{quote(SMTP_PASSWORD, safe='')}@localhost:{port}?cafile={ca.cafile}{option}")
        _notice()
        assert delivery.deliver_due() == 1
    assert len(recorder.messages) == 1 and recorder.logins == [(SMTP_USER, SMTP_PASSWORD, True)]
    assert all(in_tls for _, in_tls in recorder.mail_from)


@pytest.mark.django_db(transaction=True)
def test_the_nodes_thread_delivers_within_seconds_of_the_commit(mailbox: Mailbox) -> None:
    delivery.start()
    try:
        started = time.monotonic()
        with transaction.atomic():
            _notice()
        while not mailbox.messages and time.monotonic() - started < 10:
            threading.Event().wait(0.02)
        took = time.monotonic() - started
    finally:
        assert delivery.stop(timeout=10)
    assert len(mailbox.messages) == 1 and took < 5, took
    assert not [t for t in threading.enumerate() if t.name == "mail"]


@pytest.mark.django_db
def test_a_refused_login_is_our_set_up_and_is_retried_not_given_up(settings: Any, tmp_path: Any) -> None:
    ca = make_ca(tmp_path)
    with smtp_server("starttls", ca) as (recorder, port):
        settings.EMAIL_SERVER = smtp.parse(f"smtp://{SMTP_USER}:wrong-password@localhost:{port}"
                                           f"?starttls=1&cafile={ca.cafile}")
        row = _notice()
        counts = delivery.run()
    assert (counts.retried, counts.dropped) == (1, 0) and recorder.messages == []
    waiting = OutgoingMail.objects.get(pk=row.pk)
    assert waiting.failed is None and waiting.last_error == "SMTPAuthenticationError: 535"
