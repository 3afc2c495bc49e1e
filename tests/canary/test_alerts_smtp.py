"""Email alerts inside TLS: STARTTLS required (RFC 3207) or implicit TLS (RFC 8314 §3.3), SMTP AUTH (RFC 4954)
only inside it, certificates verified (a private CA trusted through `?cafile=`), against real aiosmtpd servers
with a CA and certificate made at test time. A wrong password or a server without STARTTLS is a failure that
sends nothing in clear and never shows the password."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from canary.alerts.pipelines import Pipeline, PipelineError
from canary.alerts.settings import from_environment
from tests.canary.alert_receivers import (
    ALERT, SMTP_PASSWORD, SMTP_USER, LocalCA, Taking, five_alerts_through, make_ca, smtp_server,
)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCA]:
    yield make_ca(tmp_path_factory.mktemp("ca"))


def smtp_url(scheme: str, port: int, ca: LocalCA | None, password: str | None = SMTP_PASSWORD,
             starttls: bool = False) -> str:
    """ALERT_SMTP_URL with the user and percent-encoded password, STARTTLS asked or not, trusting the test CA."""
    credentials = SMTP_USER + (f":{quote(password, safe='')}" if password is not None else "") + "@"
    query = "&".join((["starttls=1"] if starttls else []) + ([f"cafile={quote(str(ca.cafile))}"] if ca else []))
    return f"{scheme}://{credentials}127.0.0.1:{port}" + (f"?{query}" if query else "")


def email(url: str, **environ: str) -> Pipeline:
    [pipeline] = from_environment({"ALERT_SMTP_URL": url, "ALERT_EMAIL_TO": "noc@example.test", **environ})
    return pipeline


@pytest.mark.parametrize("mode, scheme, starttls", [("starttls", "smtp", True), ("implicit", "smtps", False)])
def test_rfc3207_rfc8314_mail_goes_inside_verified_tls_with_auth(ca: LocalCA, mode: str, scheme: str,
                                                                  starttls: bool) -> None:
    with smtp_server(mode, ca) as (server, port):
        pipeline = email(smtp_url(scheme, port, ca, starttls=starttls))
        assert pipeline.name == f"email 127.0.0.1:{port}"
        ok, error, _ = pipeline.deliver(ALERT)
        assert ok, error
        assert server.logins == [(SMTP_USER, SMTP_PASSWORD, True)]          # percent-decoded, inside TLS
        assert server.mail_from == [("canary-alerts@localhost", True)]
        assert "test alert" in server.messages[0]


def test_the_password_may_come_from_a_file(ca: LocalCA, tmp_path: Path) -> None:
    secret_file = tmp_path / "smtp-password"
    secret_file.write_text(SMTP_PASSWORD + "\n")
    with smtp_server("implicit", ca) as (server, port):
        ok, error, _ = email(smtp_url("smtps", port, ca, password=None),
                             ALERT_SMTP_PASSWORD_FILE=str(secret_file)).deliver(ALERT)
        assert ok, error
        assert server.logins == [(SMTP_USER, SMTP_PASSWORD, True)]


@pytest.mark.parametrize("scheme, mode, starttls", [("smtps", "implicit", False), ("smtp", "starttls", True)])
def test_rfc8314_certificates_are_verified_by_default(ca: LocalCA, scheme: str, mode: str, starttls: bool) -> None:
    """Without `cafile=` the test CA is not trusted: the handshake fails before AUTH or MAIL."""
    with smtp_server(mode, ca) as (server, port):
        ok, error, _ = email(smtp_url(scheme, port, None, starttls=starttls)).deliver(ALERT)
        assert not ok and "CERTIFICATE_VERIFY_FAILED" in error, error
        assert server.logins == server.mail_from == server.messages == []


def test_rfc3207_starttls_asked_but_not_offered_sends_nothing_in_clear(ca: LocalCA) -> None:
    """The server offers no STARTTLS (and would take AUTH in clear): no AUTH, no MAIL, no message."""
    with smtp_server("plain") as (server, port):
        ok, error, _ = email(smtp_url("smtp", port, ca, starttls=True)).deliver(ALERT)
        assert not ok and error == "the server does not offer STARTTLS: nothing sent"
        assert server.logins == server.mail_from == server.messages == []


def test_a_wrong_password_fails_and_is_reported_without_it(ca: LocalCA, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """RFC 4954 §6: the 535 is a failure of the pipeline, reported through the others after 5 refusals; the
    password is in no log line, alert, listing or outbox record."""
    wrong = "Wr0ng-pass/word?x"
    with smtp_server("starttls", ca) as (server, port):
        pipeline, other = email(smtp_url("smtp", port, ca, password=wrong, starttls=True)), Taking("hook")
        with caplog.at_level(logging.INFO):
            alerting = five_alerts_through(tmp_path, [pipeline, other])
        assert server.messages == [] and set(server.logins) == {(SMTP_USER, wrong, True)}   # each mechanism tried
    [meta] = [a for a in other.taken if a["kind"] == "pipeline_failing"]
    assert meta["text"].startswith(f"email 127.0.0.1:{port} has refused 5 alerts in 2 min (last: SMTP 535 "), meta
    shown = [caplog.text, json.dumps(other.taken), json.dumps(alerting.status()),
             (tmp_path / "outbox.json").read_text(), (tmp_path / "journal.jsonl").read_text()]
    for secret in (wrong, quote(wrong, safe="")):
        assert not any(secret in text for text in shown)


@pytest.mark.parametrize("url, problem", [
    ("ftp://alerts:s3cret-pw@h", "the scheme must be smtp:// or smtps://"),
    ("alerts:s3cret-pw@h", "the scheme must be smtp:// or smtps://"),
    ("smtp://alerts:s3cret-pw@h:99999?starttls=1", "the port is not a number from 1 to 65535"),
    ("smtp://h:x25", "the port is not a number from 1 to 65535"),
    ("smtp://h:0", "the port is not a number from 1 to 65535"),
    ("smtps://alerts:s3cret-pw@h?starttls=1", "starttls=1 with smtps://"),
    ("smtp://alerts:s3cret-pw@h", "credentials over plain smtp:// would cross the network in clear"),
    ("smtp://alerts:s3cret-pw@h?starttls=0", "credentials over plain smtp:// would cross the network in clear"),
    ("smtps://alerts@h", "a user without a password"),
    ("smtps://:s3cret-pw@h", "a password without a user"),
    ("smtps://alerts:s3cret-p%C3%A4@h", "non-ASCII"),
    ("smtp://h?cafile=/etc/ssl/certs/ca-certificates.crt", "cafile= needs TLS"),
    ("smtps://alerts:s3cret-pw@h?cafile=/nonexistent/ca.pem", "the cafile= file cannot be loaded"),
    ("smtps://alerts:s3cret-pw@h?password=s3cret-pw", "an unknown option (known: starttls, cafile)"),
    ("smtps://h?starttls=1&starttls=1", "repeated option 'starttls'"),
    ("smtp://h?starttls=maybe", "starttls= takes 1 or 0"),
    ("smtp://h/s3cret-path", "takes no path"),
])
def test_a_bad_smtp_url_is_one_error_naming_the_key_never_the_secret(url: str, problem: str) -> None:
    with pytest.raises(PipelineError) as raised:
        email(url)
    message = str(raised.value)
    assert message.startswith("ALERT_SMTP_URL: ") and problem in message, message
    assert "s3cret" not in message


@pytest.mark.parametrize("url, file_text, problem", [
    ("smtps://alerts:s3cret-pw@h", "s3cret-pw\n", "ALERT_SMTP_URL has a password too"),
    ("smtps://h", "s3cret-pw\n", "ALERT_SMTP_URL names no user"),
    ("smtps://alerts@h", None, "cannot read"),
    ("smtps://alerts@h", "\n", "is empty"),
])
def test_a_bad_password_file_is_one_error_naming_it(tmp_path: Path, url: str, file_text: str | None,
                                                     problem: str) -> None:
    path = tmp_path / "smtp-password"
    if file_text is not None:
        path.write_text(file_text)
    with pytest.raises(PipelineError, match=f"^ALERT_SMTP_PASSWORD_FILE: .*{problem}") as raised:
        email(url, ALERT_SMTP_PASSWORD_FILE=str(path))
    assert "s3cret" not in str(raised.value)


def test_repr_of_a_pipeline_holds_no_secret() -> None:
    pipelines: list[Any] = from_environment({
        "ALERT_SMTP_URL": "smtps://alerts:s3cret-pw@h", "ALERT_EMAIL_TO": "noc@example.test",
        "ALERT_WEBHOOK_URL": "https://u:s3cret-pw@hooks.example/services/s3cret-path?token=s3cret-q",
        "SENTRY_DSN": "https://s3cretkey@o1.ingest.example/42"})
    assert [p.name.split("#")[0] for p in pipelines] == ["webhook hooks.example", "email h:465", "sentry"]
    assert not any("s3cret" in repr(p) or "s3cret" in p.name for p in pipelines)
