"""Real receivers for the alert pipeline tests: a private CA and a server certificate made at test time, aiosmtpd
servers (STARTTLS required, implicit TLS, or plain) that record what each connection did, and a webhook that
answers with a redirect."""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from canary.alerts.alerting import Alerting
from canary.alerts.pipelines import Pipeline, Result
from canary.alerts.settings import from_environment
from tests.plugin import free_port, lasting_port
from tests.support import LocalReceiver, Mailbox

SMTP_USER, SMTP_PASSWORD = "alerts", "Sm7p pass:/@?&%+word"   # characters that must be percent-encoded in a URL


# One alert as the outbox holds it, for delivering straight through a pipeline.
ALERT = {"id": "a1", "fold_key": "test::", "kind": "test", "severity": "info", "text": "test alert", "cluster": None,
         "node": None, "at": 0.0, "count": 1, "figures": {}}


@dataclass
class LocalCA:
    """A CA certificate (`cafile`, for the client's `?cafile=`) and a server certificate for 127.0.0.1 and
    localhost signed by it (`server_context()`)."""

    cafile: Path
    certfile: Path
    keyfile: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context


def make_ca(folder: Path) -> LocalCA:
    """EC keys (quick to make) and certificates with the extensions strict X.509 checking wants."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "canary alert tests CA")])

    def builder(subject: str, public_key: Any) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(ca_name).public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    ca = (builder("canary alert tests CA", ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (builder("localhost", key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    made = LocalCA(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    made.cafile.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    made.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    made.keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return made


@dataclass
class Recorder(Mailbox):
    """aiosmtpd's handler and authenticator: each message, each MAIL FROM, each AUTH attempt (user, password)
    and whether it came inside TLS, so a test can prove that nothing was sent in clear."""

    messages: list[str] = field(default_factory=list)
    mail_from: list[tuple[str, bool]] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802 - aiosmtpd's
                          options: list[str]) -> str:
        self.mail_from.append((address, _in_tls(server)))
        envelope.mail_from = address
        return "250 OK"

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> AuthResult:
        assert isinstance(auth, LoginPassword)
        user, password = auth.login.decode("utf-8"), auth.password.decode("utf-8")
        self.logins.append((user, password, _in_tls(server)))
        return AuthResult(success=(user, password) == (SMTP_USER, SMTP_PASSWORD), handled=False)   # 535 when wrong


def _in_tls(server: Any) -> bool:
    """Whether the connection aiosmtpd's SMTP `server` speaks on is inside TLS (STARTTLS or implicit)."""
    return server.transport.get_extra_info("ssl_object") is not None


@contextlib.contextmanager
def smtp_server(mode: str, ca: LocalCA | None = None) -> Iterator[tuple[Recorder, int]]:
    """`starttls`: STARTTLS offered and required, AUTH only inside it; `implicit`: TLS from the first byte;
    `plain`: no TLS at all, and AUTH accepted in clear (so a client that tried it would be seen doing so)."""
    recorder, port = Recorder(), free_port()
    kwargs: dict[str, Any] = {"authenticator": recorder}
    if mode == "starttls":
        assert ca is not None
        kwargs.update(tls_context=ca.server_context(), require_starttls=True, auth_require_tls=True)
    elif mode == "implicit":
        assert ca is not None
        kwargs.update(ssl_context=ca.server_context(), auth_require_tls=False)
    else:
        kwargs.update(auth_require_tls=False)
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


def name_of(webhook_url: str) -> str:
    """The pipeline name the router gives that webhook URL."""
    return from_environment({"ALERT_WEBHOOK_URL": webhook_url})[0].name


def five_alerts_through(folder: Path, pipelines: list[Pipeline]) -> Alerting:
    """Five alerts (node_down, ungrouped) delivered by `pipelines`, then what is due after (the report of a
    pipeline that refused all five, which goes to the others)."""
    alerting = Alerting(folder, pipelines)
    for i in range(5):
        alerting.emit("node_down", f"blue/blue-{i} failed its health checks", "blue", f"blue-{i}", group=False)

    async def deliver() -> None:
        await alerting.deliver_due()
        await alerting.deliver_due()
    asyncio.run(deliver())
    return alerting


class Taking(Pipeline):
    """A pipeline that takes every alert (keeps it), for tests of what the others are sent."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.taken: list[dict[str, Any]] = []

    def send(self, alert: Any) -> Result:
        self.taken.append(alert)
        return True, "", None


class Redirecting(LocalReceiver):
    """A webhook that answers every POST with `status` and a Location elsewhere."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(lasting_port())
        self.status, self.location, self.hits = status, location, 0

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str]]:
        self.hits += 1
        return self.status, {"Location": self.location}


class Recording(LocalReceiver):
    """A webhook that records each request (path, Authorization header, body) and answers `status`; GET and PUT
    too, the methods a followed redirect could come as."""

    def __init__(self, status: int = 200) -> None:
        super().__init__(lasting_port())
        self.status = status
        self.requests: list[tuple[str, str, bytes]] = []

    def start(self) -> Recording:
        super().start()
        assert self.server is not None
        handler = self.server.RequestHandlerClass
        handler.do_GET = handler.do_PUT = handler.do_POST  # type: ignore[attr-defined]
        return self

    def texts(self) -> list[str]:
        return [json.loads(body)["text"] for _, _, body in self.requests]

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str]]:
        self.requests.append((path, headers.get("Authorization", ""), body))
        return self.status, {}
