"""The mail server's question: is this IMAP or SMTP login right? Asked by Dovecot for each plain LOGIN/PLAIN.

Dovecot never reads our database: it asks `POST /api/mail/check` with its own confidential client's
credentials (only the client LOGINSVC_MAIL_SERVER_CLIENT may ask), the login name, the password,
the service and the mail client's address. The answer applies what a sign-in applies: the
brute-force counters per account and address (the mail client's address, as Dovecot saw it), the
audit log, and revocation at once (an app password is looked up at every login). The account-wide
lock does not hold app passwords: someone guessing the account's password must not cut its owner's
mail programs off, and 100 random bits need no more than the pair and address locks. The account's own
password opens mail only when ops allow it (LOGINSVC_MAIL_ACCOUNT_PASSWORD=allow), and never for an
account with a second factor: a password alone must not do what the browser needs two factors for.
"""
from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from django.contrib import auth
from django.http import HttpRequest

from loginsvc import conf
from loginsvc.accounts import audit as accounts_audit
from loginsvc.accounts import throttle
from loginsvc.accounts.authentication import counted
from loginsvc.accounts.forms import MAX_PASSWORD_LENGTH
from loginsvc.accounts.models import normalise_email
from loginsvc.mailclients import app_passwords, audit
from loginsvc.mfa import factors

SERVICES = {"imap": app_passwords.IMAP, "smtp": app_passwords.SMTP, "submission": app_passwords.SMTP}


class Result(enum.Enum):
    OK = "ok"
    REFUSED = "refused"
    LOCKED = "locked"


@dataclass(frozen=True)
class Answer:
    result: Result
    email: str = ""
    via: str = ""  # "app_password" or "account_password"
    retry_after: int = 0


def address(text: str) -> str | None:
    """The mail client's address as Dovecot sends it (`%{rip}`), or None when it is not an IP address."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def check(request: HttpRequest, login: str, password: str, service: str, ip: str) -> Answer:
    """Is `password` right for `login` on `service` (imap, smtp) from the mail client at `ip`?"""
    email, channel = normalise_email(login)[:254], SERVICES[service]
    # An app password is not held by the account-wide lock (a password guesser elsewhere must not cut off
    # the owner's mail programs); the account's own password, when ops allow it, is held like a sign-in.
    looks_like_app_password = app_passwords.normalise(password) is not None
    attempt, locked = counted(request, email, channel, ip=ip, known=looks_like_app_password)
    if locked is not None:
        return Answer(Result.LOCKED, retry_after=locked.retry_after)
    row = app_passwords.verify(email, password, channel)
    if row is not None:
        throttle.succeeded(attempt)
        app_passwords.used(row, ip)
        return Answer(Result.OK, row.user.email, "app_password")
    if conf.get("MAIL_ACCOUNT_PASSWORD") == "allow" and len(password) <= MAX_PASSWORD_LENGTH:
        user = auth.authenticate(request, username=email, password=password)
        if user is not None and not factors.has_factor(user):
            throttle.succeeded(attempt)
            accounts_audit.success(user.pk, ip, channel)
            return Answer(Result.OK, user.email, "account_password")
    audit.refused(email, ip, channel, "wrong or revoked password")
    return Answer(Result.REFUSED)
