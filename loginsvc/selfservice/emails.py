"""Changing one's address: the password first, a code to the new address, then a way back for the old one.

1. The signed-in owner gives the new address and the current password (counted like a sign-in). A code
   goes to the new address (`email_change_code`): whoever confirms must read that mailbox. It works 15
   minutes, in this browser, 5 wrong entries at most (each also counted like a wrong password).
2. With the code, the address changes, and the old address gets a notice (`email_changed`) with an undo
   code, valid 7 days. A code, not a link: mail scanners open links, and a link would put a secret in a URL.
3. Whoever holds the old mailbox can undo it at /account/email/undo/ without signing in (the one who
   changed it may also have changed the password): the old address comes back, every session and
   product sign-in of the account ends, and the password stops working, so that the owner sets a new
   one through the recovery by mail, which now reaches them again.

An address another account has is refused when the code is given, not before: only the holder of
that mailbox learns it. Everything lives in the database every node shares.
"""
from __future__ import annotations

import enum
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from loginsvc import conf
from loginsvc.accounts import throttle
from loginsvc.accounts.authentication import Outcome, confirm_password, counted
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.models import User, normalise_email
from loginsvc.mail import notices
from loginsvc.mfa import recovery as recovery_codes
from loginsvc.selfservice import audit, codes
from loginsvc.selfservice.models import EmailChange

PURPOSE, UNDO_PURPOSE = "email-change", "email-undo"
UNDO_DAYS = 7


class Result(enum.Enum):
    SENT = "sent"            # a code went to the new address
    CHANGED = "changed"      # the address is the new one; the old one has its undo code
    UNDONE = "undone"
    WRONG = "wrong"          # the password, or a code: wrong, expired or used
    LOCKED = "locked"
    TAKEN = "taken"          # the new address is another account's (told only to whoever has its code)
    SAME = "same"            # the new address is the current one


def ask(request: HttpRequest, new_email: str, password: str) -> tuple[Result, int]:
    """Step 1 for the signed-in user: (the result, seconds to wait when LOCKED)."""
    user, new_email = request.user, normalise_email(new_email)
    checked = confirm_password(request, user, password, "email-change")
    if checked.outcome is Outcome.LOCKED:
        return Result.LOCKED, checked.retry_after
    if checked.outcome is not Outcome.SUCCESS:
        return Result.WRONG, 0
    if new_email == user.email:
        return Result.SAME, 0
    code = codes.new_code()
    with transaction.atomic():
        EmailChange.objects.filter(user=user, confirmed=None).delete()  # one pending change at a time
        EmailChange.objects.create(user=user, old_email=user.email, new_email=new_email,
                                   digest=codes.digest(PURPOSE, new_email, code), browser=codes.browser_of(request),
                                   until=timezone.now() + timedelta(seconds=conf.get("RECOVERY_CODE_SECONDS")))
        notices.email_change_code(new_email, code)
    audit.email_change_asked(user.pk, client_ip(request))
    return Result.SENT, 0


def confirm(request: HttpRequest, code: str) -> tuple[Result, int]:
    """Step 2: the code from the new address's mail, in the browser that asked."""
    user, ip = request.user, client_ip(request)
    attempt, locked = counted(request, user.email, "email-change")
    if locked is not None:
        return Result.LOCKED, locked.retry_after
    change = (EmailChange.objects.filter(user=user, browser=codes.browser_of(request), confirmed=None,
                                         until__gt=timezone.now(), wrong__lt=conf.get("RECOVERY_CODE_TRIES"))
              .order_by("-pk").first())
    if change is None or not codes.matches(change.digest, PURPOSE, change.new_email, code):
        if change is not None:
            EmailChange.objects.filter(pk=change.pk).update(wrong=F("wrong") + 1)
        return Result.WRONG, 0
    undo = recovery_codes.new_code()
    try:
        with transaction.atomic():
            if not EmailChange.objects.filter(pk=change.pk, confirmed=None).update(
                    confirmed=timezone.now(), undo_digest=codes.digest(UNDO_PURPOSE, change.old_email, undo),
                    undo_until=timezone.now() + timedelta(days=UNDO_DAYS)):
                return Result.WRONG, 0  # confirmed meanwhile, here or on another node
            user.email = change.new_email
            user.save(update_fields=["email"])
            notices.email_changed(change.old_email, change.new_email, f"{undo[:5]}-{undo[5:]}", UNDO_DAYS, ip)
    except IntegrityError:
        return Result.TAKEN, 0
    throttle.succeeded(attempt)
    audit.email_changed(user.pk, ip)
    return Result.CHANGED, 0


def undo(request: HttpRequest, old_email: str, code: str) -> tuple[Result, int]:
    """Within 7 days, the holder of the old address takes it back (no sign-in needed)."""
    old_email, ip = normalise_email(old_email), client_ip(request)
    attempt, locked = counted(request, old_email, "email-undo")
    if locked is not None:
        return Result.LOCKED, locked.retry_after
    candidates = EmailChange.objects.filter(old_email=old_email, undone=None, undo_until__gt=timezone.now())
    change = next((c for c in candidates.order_by("-pk")[:5]
                   if codes.matches(c.undo_digest, UNDO_PURPOSE, old_email, code)), None)
    if change is None:
        return Result.WRONG, 0
    try:
        with transaction.atomic():
            if not EmailChange.objects.filter(pk=change.pk, undone=None).update(undone=timezone.now()):
                return Result.WRONG, 0
            user = User.objects.select_for_update().get(pk=change.user_id)
            user.email = old_email
            user.set_unusable_password()  # whoever changed the address may know it: recovery by mail sets a new one
            user.save()  # a password made unusable ends every session and product sign-in (accounts/sign_ins.py)
    except IntegrityError:
        return Result.TAKEN, 0
    throttle.succeeded(attempt)
    audit.email_change_undone(change.user_id, ip)
    return Result.UNDONE, 0


def undo_code_form(text: object) -> str | None:
    """An undo code as typed (a recovery code's form: ten letters and digits), normalised, or None."""
    return recovery_codes.normalise(text)

