"""A local SMTP server (aiosmtpd) that stores every message in a Maildir, so `make up`'s mail can be read."""
from __future__ import annotations

import asyncio
import email.parser
import email.policy
import mailbox
import os
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope

from deploy.cli import Parser
from deploy.stack import DEFAULT_MAIL_LISTEN, StackError, loopback_address

MAX_MESSAGE_BYTES = 10 * 1024 * 1024    # bigger messages are refused (552) before they are stored
HOSTNAME = "localhost"                  # named, not looked up: aiosmtpd's default getfqdn() can stall on DNS


def open_maildir(path: Path) -> mailbox.Maildir:
    """The Maildir at `path`, created owner-only: messages carry recovery codes."""
    os.umask(0o077)  # Maildir creates its files with 0666 & ~umask: 0600
    for sub in ("tmp", "new", "cur"):  # also into a directory that exists already (Maildir's create= would not)
        (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return mailbox.Maildir(path, create=False)


def envelope_headers(envelope: Envelope) -> bytes:
    """The SMTP envelope as header lines: who the message was really sent from and to (Bcc included)."""
    sender = envelope.mail_from or ""
    recipients = ", ".join(envelope.rcpt_tos)
    return f"X-Envelope-From: <{sender}>\nX-Envelope-To: {recipients}\n".encode()


def summary(envelope: Envelope, content: bytes) -> str:
    """One log line per message: time, from, to, subject, size; never the body."""
    headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(content)
    subject = " ".join(str(headers.get("subject", "")).split())
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (f"{stamp} from=<{envelope.mail_from or ''}> to={','.join(envelope.rcpt_tos)} "
            f"subject={subject!r} size={len(content)}")


class MaildirHandler:
    """aiosmtpd's handler: each message (whatever its recipients) becomes one file in the Maildir's new/."""

    def __init__(self, maildir: mailbox.Maildir) -> None:
        self.maildir = maildir

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's name
        content = envelope.original_content or b""
        line = summary(envelope, content)
        # Maildir files use the local line ending, not SMTP's CRLF.
        self.maildir.add(envelope_headers(envelope) + content.replace(b"\r\n", b"\n"))
        print(line, flush=True)
        return "250 OK: stored"


async def serve(host: str, port: int, maildir: Path) -> None:
    """Accept mail on host:port until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    handler = MaildirHandler(open_maildir(maildir))
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=MAX_MESSAGE_BYTES, enable_SMTPUTF8=True, hostname=HOSTNAME,
                     loop=loop),
        host, port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"mail server: smtp://{host}:{port} -> {maildir / 'new'}/", flush=True)
    await stop.wait()
    # Not wait_closed(): open sessions would hold the exit; asyncio.run cancels them.
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m deploy.mail_server", description=__doc__)
    parser.add_argument("--listen", default=DEFAULT_MAIL_LISTEN, help="HOST:PORT, loopback only")
    parser.add_argument("--maildir", type=Path, required=True, help="where messages are stored (DIR/new/)")
    args = parser.parse_args(argv)
    try:
        host, port = loopback_address(args.listen, "--listen")
    except StackError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(host, port, args.maildir))
    except OSError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
