"""Notices about sign-ins (ASVS 2.2.3): a sign-in from a new device and network, and the account-wide defence
taking over after many failed attempts, each mailed once to the owner through the outbox (real SMTP)."""
from __future__ import annotations

import email
from email import policy
from typing import Any

import pytest
from django.test import Client

from loginsvc.mail import delivery
from loginsvc.mail.models import OutgoingMail
from tests.conftest import PASSWORD, login
from tests.test_account_guard import Attacker, network


def _subjects(mailbox: Any) -> list[str]:
    delivery.deliver_due()
    return [str(email.message_from_string(raw, policy=policy.default)["Subject"]) for raw in mailbox.messages]


@pytest.mark.django_db
def test_a_sign_in_from_a_new_device_and_network_is_told_once(user: Any, mailbox: Any) -> None:
    home = Client(enforce_csrf_checks=True)
    assert login(home, user.email, PASSWORD).status_code == 302          # the first sign-in ever: nothing to tell
    assert _subjects(mailbox) == []
    away = Client(enforce_csrf_checks=True, REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT="Mozilla/5.0 (X11) Firefox/140.0")
    assert login(away, user.email, PASSWORD).status_code == 302
    assert _subjects(mailbox) == ["A new sign-in to your localhost account"]
    text = email.message_from_string(mailbox.messages[0], policy=policy.default).get_body(("plain",)).get_content()
    assert "198.51.100.7" in text and "Firefox/140.0" in text and PASSWORD not in text
    assert login(away, user.email, PASSWORD).status_code == 302           # known now
    assert login(Client(enforce_csrf_checks=True), user.email, PASSWORD).status_code == 302   # a known network
    assert login(home, user.email, PASSWORD, REMOTE_ADDR="203.0.113.9").status_code == 302   # a known device
    assert len(_subjects(mailbox)) == 1


@pytest.mark.django_db
def test_the_account_wide_defence_taking_over_is_told_to_the_owner_only(user: Any, mailbox: Any, settings: Any) -> None:
    settings.LOGINSVC = dict(settings.LOGINSVC, ACCOUNT_FAILURE_LIMIT=3, ACCOUNT_DELAY_THRESHOLD=50)
    attacker = Attacker()
    for address in (user.email, "nobody@example.test"):
        for i in range(4):
            attacker.guess(address, f"guess {i}", network(i))
    assert OutgoingMail.objects.filter(kind="failed_attempts").count() == 2   # the same work for both addresses
    assert _subjects(mailbox) == ["Someone is trying to sign in to your localhost account"]
    assert email.message_from_string(mailbox.messages[0], policy=policy.default)["To"] == user.email
