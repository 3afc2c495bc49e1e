"""Audit lines (ASVS 7.2.1): every failed login, lock refusal and logout is logged with the client
address, the channel and a keyed hash of the account, and never the email, password or session id."""
from __future__ import annotations

import hashlib
import json
import logging

import pytest
from django.test import Client, override_settings

from loginsvc.accounts.audit import account_tag
from loginsvc.observability.logs import JsonFormatter
from tests.conftest import PASSWORD, csrf_from, login

WRONG = "Not-The-Password-42"


def audit_entries(caplog: pytest.LogCaptureFixture) -> tuple[list[dict], str]:
    """The audit records as the JSON log writes them, and every captured line as one text."""
    formatter = JsonFormatter(cluster="blue", node="blue-1")
    lines = [formatter.format(record) for record in caplog.records]
    entries = [json.loads(line) for line in lines]
    return [e for e in entries if e["logger"] == "loginsvc.audit"], "\n".join(lines)


@pytest.mark.django_db
def test_failures_refusals_and_logouts_are_logged_without_secrets(settings, user, caplog) -> None:
    caplog.set_level(logging.INFO)
    form = Client(enforce_csrf_checks=True, REMOTE_ADDR="198.51.100.7")
    api = Client(enforce_csrf_checks=True, REMOTE_ADDR="2001:db8:9::5")
    with override_settings(LOGINSVC={**settings.LOGINSVC, "LOCKOUT_THRESHOLD": 2}):
        assert login(form, user.email, WRONG).status_code == 401
        assert api.post("/api/login", {"username": user.email.upper(), "password": WRONG},
                        content_type="application/json", HTTP_X_CSRFTOKEN=csrf_from(api)).status_code == 401
        assert login(form, user.email, WRONG).status_code == 401  # the second: locks the pair
        assert login(form, user.email, PASSWORD).status_code == 429
    signed_in = Client(enforce_csrf_checks=True, REMOTE_ADDR="203.0.113.3")
    assert login(signed_in, user.email, PASSWORD).status_code == 302
    session_id = signed_in.cookies["loginsvc_sid"].value
    device = signed_in.cookies["loginsvc_device"].value
    assert signed_in.post("/logout/", {"csrfmiddlewaretoken": signed_in.cookies["csrftoken"].value}).status_code == 302

    entries, text = audit_entries(caplog)
    tag = account_tag(user.email)
    failures = [e for e in entries if e["msg"] == "login: failure"]
    assert [(e["channel"], e["client_ip"]) for e in failures] == [
        ("form", "198.51.100.7"), ("api", "2001:db8:9::5"), ("form", "198.51.100.7")]
    assert all(e["account"] == tag for e in failures)  # the same tag whatever the case typed
    refused = [e for e in entries if e["msg"] == "login: refused"]
    assert refused == [{**refused[0], "account": tag, "client_ip": "198.51.100.7", "channel": "form",
                        "scope": "account_ip", "retry_after": refused[0]["retry_after"]}]
    assert refused[0]["retry_after"] > 0 and refused[0]["level"] == "info"
    logouts = [e for e in entries if e["msg"] == "logout"]
    assert logouts == [{**logouts[0], "user_id": user.pk, "client_ip": "203.0.113.3"}]
    for secret in (user.email, user.email.upper(), PASSWORD, WRONG, session_id, device):
        assert secret not in text


@pytest.mark.django_db
def test_a_logout_without_a_session_logs_nothing(client: Client, caplog) -> None:
    caplog.set_level(logging.INFO)
    client.post("/logout/", {"csrfmiddlewaretoken": csrf_from(client)})
    assert not [e for e in audit_entries(caplog)[0] if e["msg"] == "logout"]


def test_the_account_tag_is_keyed_by_the_secret_key() -> None:
    email = "ann@example.test"
    tag = account_tag(email)
    assert tag == account_tag(email) and len(tag) == 24
    assert tag not in hashlib.sha256(email.encode()).hexdigest()  # not a plain hash anyone can compute
    with override_settings(SECRET_KEY="another-secret-key-" * 3):
        assert account_tag(email) != tag
