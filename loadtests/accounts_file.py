"""`--accounts FILE`: accounts that already exist on the target, one `email:password` a line, for a run that must
create none (`--remote`, a staging stack).

The format, kept simple on purpose: UTF-8; each line `email:password`, split at the first `:` (an address has
none; a password may); blank lines and lines starting with `#` are skipped; at most MAX_ACCOUNTS accounts, each
address once. The file holds passwords, so it must be readable by its owner only (like an ssh key), and a
problem is reported by line number and never with the line's text: it may be a password.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_ACCOUNTS = 10_000
MAX_BYTES = 4 * 1024 * 1024
MAX_EMAIL = 254                       # RFC 5321 §4.5.3.1.3, as the login form takes it


class AccountsFileError(ValueError):
    """One problem with the file: one line naming the file and, where it applies, the line number."""


def _email_problem(email: str) -> str | None:
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain.strip(".") or len(email) > MAX_EMAIL:
        return "the part before ':' is not an email address"
    if any(ch.isspace() or not ch.isprintable() for ch in email):
        return "the email address has spaces or control characters in it"
    return None


def parse(text: str) -> dict[str, str]:
    """email -> password for every account line of `text`; AccountsFileError("line N: problem") otherwise."""
    accounts: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        email, colon, password = line.partition(":")
        email = email.strip().lower()   # the service stores and looks up addresses lower-cased
        if not colon or not password:
            raise AccountsFileError(f"line {number}: expected email:password")
        problem = _email_problem(email)
        if problem:
            raise AccountsFileError(f"line {number}: {problem}")
        if any(ord(ch) < 0x20 and ch != "\t" or ch == "\x7f" for ch in password):
            raise AccountsFileError(f"line {number}: the password has a control character in it")
        if email in first_seen:
            raise AccountsFileError(f"line {number}: {email} is already on line {first_seen[email]}")
        if len(accounts) == MAX_ACCOUNTS:
            raise AccountsFileError(f"line {number}: more than {MAX_ACCOUNTS} accounts")
        first_seen[email] = number
        accounts[email] = password
    if not accounts:
        raise AccountsFileError("no accounts in it (one email:password a line)")
    return accounts


def read(path: Path) -> dict[str, str]:
    """The accounts of the file at `path`, checked: owner-only, bounded, UTF-8, well-formed."""
    try:
        try:
            with path.open("rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                if not stat.S_ISREG(mode):
                    raise AccountsFileError("not a regular file")
                if stat.S_IMODE(mode) & 0o077:
                    raise AccountsFileError(f"open to group or others (mode {stat.S_IMODE(mode):o}); it "
                                            "holds passwords: chmod 600 it")
                raw = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise AccountsFileError(f"cannot read it ({exc.strerror})") from None
        if len(raw) > MAX_BYTES:
            raise AccountsFileError(f"larger than {MAX_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise AccountsFileError("not UTF-8 text") from None
        return parse(text)
    except AccountsFileError as exc:
        raise AccountsFileError(f"{path}: {exc}") from None
