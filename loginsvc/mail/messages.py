"""Messages to account holders: rendered from templates, written to the outbox in the caller's transaction.

Each kind of message is three templates under templates/mail/: `<kind>_subject.txt`, `<kind>.txt`
and `<kind>.html`, marked for translation ({% translate %}), rendered in the recipient's language.
What every message may use: `origin` (the public origin: the only place a message links to),
`service` (its host name) and the caller's context. No message ever holds a password or a token:
the callers pass what happened, when and from where, and at most a short-lived code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import translation

from loginsvc import conf
from loginsvc.mail.models import OutgoingMail
from loginsvc.mfa import sealing

SEAL_CONTEXT = "mail"


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    html: str


def render(kind: str, context: dict[str, Any], language: str | None = None) -> Message:
    """The message `kind` says, with `context`, in `language` (default: the site's)."""
    full = {"origin": conf.get("OIDC_ISSUER"), "service": conf.public_host(settings.LOGINSVC), **context}
    with translation.override(language or settings.LANGUAGE_CODE):
        subject = " ".join(render_to_string(f"mail/{kind}_subject.txt", full).split())  # one line
        return Message(subject, render_to_string(f"mail/{kind}.txt", full), render_to_string(f"mail/{kind}.html", full))


def queue(kind: str, to: str, context: dict[str, Any], language: str | None = None,
          needs_account: bool = False) -> OutgoingMail:
    """Write the message to the outbox now, in the caller's transaction: it goes out once that commits
    (and never if it rolls back), from any node, retried while SMTP is down. `needs_account`: sent only
    if an active account has the address when it is delivered (else dropped unsent)."""
    from loginsvc.mail import delivery  # the outbox's worker; it imports this module's models too

    message = render(kind, context, language)
    sealed = sealing.seal(json.dumps([message.subject, message.text, message.html]).encode(), SEAL_CONTEXT)
    row = OutgoingMail.objects.create(kind=kind, to=to, sealed=sealed, needs_account=needs_account)
    transaction.on_commit(delivery.kick)
    return row


def opened(row: OutgoingMail) -> Message:
    """The message a row holds (sealed at rest)."""
    subject, text, html = json.loads(sealing.unseal(row.sealed, SEAL_CONTEXT))
    return Message(subject, text, html)
