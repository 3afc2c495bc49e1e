"""A forgotten password: an 8-digit code by mail, then a new password (and the second factor, if the account has one).

Codes, not links: mail scanners open links, and a code also ties the reset to the browser that asked
(a digest of its CSRF secret, as passkey ceremonies do), so a code read from a mailbox by someone
else does not work elsewhere. A code works `RECOVERY_CODE_SECONDS` (15 min), once, and dies after
`RECOVERY_CODE_TRIES` (5) wrong entries; every entry is also counted like a password attempt
(throttle.py), so guessing locks the pair and the address as wrong passwords do.

Asking never tells whether the address has an account (OWASP Forgot Password): the answer is the
same, and so is the work: a code row and a queued message every time; the mail outbox drops the
message unsent when no active account has the address (mail/delivery.py). Beyond
`RECOVERY_CODES_PER_HOUR` (5) codes for one address, asking gets the same answer and no code; beyond
`RECOVERY_IP_REQUESTS` per hour from one network, a 429.

Every row lives in the database every node shares, so a recovery asked through blue finishes
through green, and a node that dies in between loses nothing.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from loginsvc import conf
from loginsvc.accounts import throttle
from loginsvc.accounts.authentication import counted, factor_accepted
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.models import User, normalise_email
from loginsvc.mail import notices
from loginsvc.mfa import factors
from loginsvc.selfservice import audit, codes
from loginsvc.selfservice.models import PasswordReset

CHANNEL = "recovery"
PURPOSE = "password-reset"
parse_code = codes.parse


def ask(request: HttpRequest, email: str) -> int:
    """Mail a recovery code for `email` to this browser's owner, if the address has an account: 0, or the
    seconds to wait when this network asked too often (429). Otherwise the same for every address."""
    wait = throttle.recovery_request(client_ip(request))
    if wait:
        return wait
    email, now = normalise_email(email), timezone.now()
    PasswordReset.objects.filter(until__lt=now - timedelta(hours=1)).delete()  # anyone's: past use and count
    recent = PasswordReset.objects.filter(email=email, created__gt=now - timedelta(hours=1)).count()
    if recent >= conf.get("RECOVERY_CODES_PER_HOUR"):
        audit.code_limit(email, client_ip(request))
        return 0
    code = codes.new_code()
    with transaction.atomic():
        PasswordReset.objects.create(email=email, digest=codes.digest(PURPOSE, email, code), browser=codes.browser_of(request),
                                     until=now + timedelta(seconds=conf.get("RECOVERY_CODE_SECONDS")))
        notices.recovery_code(email, code)
    audit.code_asked(email, client_ip(request))
    return 0


class Result(enum.Enum):
    DONE = "done"                  # the new password is set; every session and sign-in of the account ended
    REFUSED = "refused"            # no such code for this browser, expired, used, or wrong: one generic answer
    LOCKED = "locked"              # throttled: 429 with retry_after
    WEAK = "weak"                  # the code is right, the new password is not allowed (problems)
    FACTOR_DUE = "factor_due"      # the code is right; the account's second factor is due too (methods)


@dataclass(frozen=True)
class Answer:
    result: Result
    retry_after: int = 0
    problems: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()


def _waiting(request: HttpRequest, email: str) -> PasswordReset | None:
    return (PasswordReset.objects.filter(email=email, browser=codes.browser_of(request), used=None, until__gt=timezone.now(),
                                         wrong__lt=conf.get("RECOVERY_CODE_TRIES")).order_by("-created").first())


def _factor_passed(request: HttpRequest, user: User, method: object, code: object) -> bool:
    """The account's second factor, checked as a sign-in's second step checks it (an app's code or a
    recovery code, spent on success; a passkey needs a ceremony this flow has not)."""
    if not isinstance(method, str) or method not in factors.CODE_FORMS:  # JSON may send any value
        return False
    parsed = factors.CODE_FORMS[method][0](code)
    return parsed is not None and factor_accepted(request, user, method, parsed, client_ip(request),
                                                  CHANNEL) is not None


def confirm(request: HttpRequest, email: str, code: str, new_password: str,
            method: object = None, factor_code: object = None) -> Answer:
    """The code mailed to `email` for this browser, then `new_password`; for an account with a second
    factor, also `method` and `factor_code`. Counted like a password attempt (a wrong code is a failure)."""
    email, ip = normalise_email(email), client_ip(request)
    attempt, locked = counted(request, email, CHANNEL)
    if locked is not None:
        return Answer(Result.LOCKED, retry_after=locked.retry_after)
    reset = _waiting(request, email)
    if reset is None or not codes.matches(reset.digest, PURPOSE, email, code):
        if reset is not None:
            PasswordReset.objects.filter(pk=reset.pk).update(wrong=F("wrong") + 1)
        audit.code_refused(email, ip)
        return Answer(Result.REFUSED)
    user = factors.user_with_factors(email=email)
    if user is None or not user.is_active:
        return Answer(Result.REFUSED)
    try:
        validate_password(new_password, user)
    except ValidationError as exc:
        return Answer(Result.WEAK, problems=tuple(exc.messages))
    # A passkey cannot answer here (no ceremony): an account with one has recovery codes for this.
    methods = factors.methods_of(user)
    if methods and method is None:
        return Answer(Result.FACTOR_DUE, methods=tuple(m for m in methods if m != factors.WEBAUTHN))
    if methods and not _factor_passed(request, user, method, factor_code):
        PasswordReset.objects.filter(pk=reset.pk).update(wrong=F("wrong") + 1)
        audit.code_refused(email, ip, factor=str(method))
        return Answer(Result.REFUSED)
    with transaction.atomic():
        if not PasswordReset.objects.filter(pk=reset.pk, used=None).update(used=timezone.now()):
            return Answer(Result.REFUSED)  # spent meanwhile, on this node or another
        user.set_password(new_password)
        user.save()  # ends every session and product sign-in of the account (accounts/sign_ins.py)
        PasswordReset.objects.filter(email=email, used=None).update(used=timezone.now())  # the others too
        notices.password_changed(user, ip, "reset")
    throttle.succeeded(attempt)
    audit.password_reset(user.pk, ip)
    return Answer(Result.DONE)
