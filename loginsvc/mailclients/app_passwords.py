"""App passwords: random, named, scoped passwords for mail clients that cannot do OAuth (Apple Mail, Outlook's IMAP).

Why a fast keyed hash and not Argon2: an app password is 20 symbols drawn at random from 32
(100 bits), never chosen by a person, so no dictionary helps and a stolen digest cannot be
guessed back; what slows guessing of people's passwords adds nothing here. HMAC-SHA-256 under the
second factors' key (mfa/sealing.py) keeps a stolen table useless without that key, and makes a
check one indexed lookup: mail clients log in often, on many connections (docs/security.md).

The digest is looked up on its own, so a check costs the same whether or not the account exists;
the login name must then be the account's address, the account active, and the scope must cover
the service. Every one of a user's app passwords ends with all of the user's sign-ins
(accounts/sign_ins.py: deactivation, a new password, sign out everywhere, deletion).
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from loginsvc.accounts import session_registry, sessions, sign_ins
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.models import normalise_email
from loginsvc.mail import notices
from loginsvc.mailclients import audit
from loginsvc.mailclients.models import IMAP, MAIL, SMTP, AppPassword
from loginsvc.mfa import factors, sealing
from loginsvc.sso import central

ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 symbols: no l, o, 0 or 1 to misread
LENGTH = 20  # 100 bits
MAX_PER_ACCOUNT = 20
MAX_NAME = 64
REAUTHENTICATED_SECONDS = 300  # making one needs a sign-in this recent (with the second factor, if any)
TOUCH_SECONDS = 60  # last use is written at most this often per password
SCOPES = {IMAP: (IMAP,), SMTP: (SMTP,), MAIL: (IMAP, SMTP)}  # which services each scope opens


def new_password() -> str:
    """20 random symbols, shown in groups of four: `abcd-efgh-jkmn-pqrs-tuvw`."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, LENGTH, 4))


def normalise(text: object) -> str | None:
    """An app password as typed (any case, with or without its hyphens and spaces), or None if it cannot be one."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    raw = text.replace("-", "").replace(" ", "").lower()
    return raw if len(raw) == LENGTH and all(c in ALPHABET for c in raw) else None


def digest(raw: str) -> str:
    return sealing.digest(raw, "app-password")


def reauthenticated(request: HttpRequest) -> bool:
    """Whether this session signed in recently enough to make an app password, with its second factor
    when the account has one."""
    fresh = time.time() - (request.session.get(sessions.AUTH_TIME) or 0) <= REAUTHENTICATED_SECONDS
    return fresh and ("mfa" in central.amr(request) or not factors.has_factor(request.user))


class Refused(ValueError):
    """Why an app password was not made (the message says it to the person)."""


@dataclass(frozen=True)
class Made:
    row: AppPassword
    password: str  # shown once, never stored


def create(request: HttpRequest, name: object, scope: object) -> Made:
    """A new app password for the signed-in user (the caller checked `reauthenticated`); its owner is
    told by mail."""
    user = request.user
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise Refused(f"name must be 1 to {MAX_NAME} printable characters")
    if scope not in SCOPES:
        raise Refused("scope must be one of: " + ", ".join(SCOPES))
    password = new_password()
    with transaction.atomic():
        if AppPassword.objects.select_for_update().filter(user=user).count() >= MAX_PER_ACCOUNT:
            raise Refused(f"an account has at most {MAX_PER_ACCOUNT} app passwords: revoke one first")
        row = AppPassword.objects.create(user=user, public_id=secrets.token_urlsafe(9), name=name.strip(),
                                         scope=str(scope), digest=digest(normalise(password) or ""),
                                         created=timezone.now())
        notices.account_changed(user, client_ip(request), "app password created")
    audit.created(user.pk, client_ip(request), row.public_id, row.scope)
    return Made(row, password)


def listing(user: Any) -> list[dict[str, Any]]:
    """The user's app passwords, newest first, as `GET /api/app-passwords` lists them (no password)."""
    return [{"id": p.public_id, "name": p.name, "scope": p.scope, "created": p.created.isoformat(),
             "last_used": p.last_used.isoformat() if p.last_used else None, "last_address": p.last_address or None}
            for p in AppPassword.objects.filter(user=user).order_by("-created")]


def revoke(request: HttpRequest, public_id: str) -> bool:
    """Revoke one of the signed-in user's app passwords: its next login is refused."""
    if not session_registry.well_formed(public_id) or \
            not AppPassword.objects.filter(user=request.user, public_id=public_id).delete()[0]:
        return False
    audit.revoked(request.user.pk, client_ip(request), public_id)
    return True


def own(user: Any, public_id: str, password: str) -> AppPassword | None:
    """`user`'s app password `public_id`, if `password` is it (to put it in a profile just after it was shown)."""
    raw = normalise(password)
    if raw is None or not session_registry.well_formed(public_id):
        return None
    return AppPassword.objects.filter(user=user, public_id=public_id, digest=digest(raw)).first()


def verify(login: str, password: str, service: str) -> AppPassword | None:
    """The app password `password` of the account `login` when it opens `service` (imap, smtp), else None."""
    raw = normalise(password)
    if raw is None:
        return None
    row = AppPassword.objects.select_related("user").filter(digest=digest(raw)).first()
    if row is None or row.user.email != normalise_email(login) or not row.user.is_active:
        return None
    return row if service in SCOPES.get(row.scope, ()) else None


def used(row: AppPassword, ip: str) -> None:
    """Note a login with `row` (at most every TOUCH_SECONDS: clients log in on many connections)."""
    now = timezone.now()
    if row.last_used is not None and now - row.last_used < timedelta(seconds=TOUCH_SECONDS) and row.last_address == ip:
        return
    AppPassword.objects.filter(pk=row.pk).update(last_used=now, last_address=ip[:64])
    audit.used(row.user_id, ip, row.public_id)


@receiver(sign_ins.all_ended)
def _all_ended(sender: Any, user_id: Any, by: str, ip: str | None = None, **kwargs: Any) -> None:
    """All of a user's sign-ins end: so do the mail clients' app passwords (in the caller's transaction)."""
    if AppPassword.objects.filter(user_id=user_id).delete()[0]:
        audit.all_revoked(user_id, ip or "", by)

