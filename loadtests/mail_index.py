"""The stack's Maildir read as it fills: which recovery-code mails arrived, for whom, and when."""
# When a mail was received: deploy/mail_server.py stores each message the moment its SMTP transaction ends, with
# Python's mailbox.Maildir, which names the file after time.time() to the microsecond ("1796611456.M453446P…"):
# the same clock the load generator reads (this machine's). deploy/maildir.py reads that name (or, for a file
# named otherwise by another writer, its mtime, kept by some kernels only to the timer tick).
# The Date header will not do: the sender writes it, to the second, before it connects. Why the subject: it
# names the kind of mail and carries the code (templates/mail/recovery_code_subject.txt); no body is read.
from __future__ import annotations

import email.policy
import email.utils
import os
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

from deploy.maildir import message_id, stored_at

RECOVERY_SUBJECT = re.compile(r"recovery code: *\d{8}\s*$", re.IGNORECASE)
HEADER_BYTES = 64 * 1024     # the headers of one message; a message's body is never needed
MAX_MAILS = 200_000          # recovery mails kept in memory; a Maildir holding more is not this tool's to read


@dataclass(frozen=True)
class Mail:
    """One recovery-code mail as stored: to whom (lower-cased), when it was received (epoch seconds), its name."""

    recipient: str
    received: float
    name: str


def read_recovery_mail(path: Path, received: float | None = None) -> Mail | None:
    """The mail at `path` if it is a recovery code, else None (another kind of mail, or unreadable).
    FileNotFoundError passes: a reader moved the file to cur/, where the next look finds it."""
    try:
        if received is None:
            received = stored_at(path)
        with path.open("rb") as f:
            head = f.read(HEADER_BYTES)
        headers = BytesHeaderParser(policy=email.policy.default).parsebytes(head)
        subject = " ".join(str(headers.get("subject", "")).split())
        if not RECOVERY_SUBJECT.search(subject):
            return None
        # The envelope (deploy/mail_server.py's X-Envelope-To) is whom it was really sent to; To as a fallback.
        to = str(headers.get("x-envelope-to") or headers.get("to") or "")
        addresses = [address for _, address in email.utils.getaddresses([to]) if address]
    except FileNotFoundError:
        raise
    except (OSError, ValueError, IndexError, LookupError):
        return None
    if not addresses:
        return None
    return Mail(addresses[0].lower(), received, message_id(path.name))


class MailIndex:
    """The recovery mails of one Maildir received since `since`, read incrementally: each scan() reads only the
    files it has not seen (new/ and cur/); older files are only listed, never opened."""

    def __init__(self, root: Path, since: float) -> None:
        self.root, self.since = root, since
        self.seen: set[str] = set()
        self.mails: list[Mail] = []

    def scan(self) -> list[Mail]:
        """The recovery mails that arrived since the last scan (also kept in `mails`)."""
        found = []
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(self.root / sub))
            except FileNotFoundError:
                continue
            for entry in entries:
                key = message_id(entry.name)
                if entry.name.startswith(".") or key in self.seen:
                    continue
                try:
                    received = stored_at(Path(entry.path))   # no stat for a Maildir name: old files cost nothing
                    mail = None if received < self.since else read_recovery_mail(Path(entry.path), received)
                except FileNotFoundError:   # moved to cur/ meanwhile: found there on this scan or the next
                    continue
                self.seen.add(key)
                if mail is not None and len(self.mails) < MAX_MAILS:
                    found.append(mail)
                    self.mails.append(mail)
        return found


def recent(root: Path, since: float) -> list[Mail]:
    """The recovery mails in the Maildir at `root` received since `since` (none if there is no such Maildir)."""
    return MailIndex(root, since).scan() if root.is_dir() else []
