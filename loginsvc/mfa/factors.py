"""Which second factors an account has, named as POST /api/login reports them, and how their codes look."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

from loginsvc.mfa import audit, recovery, totp
from loginsvc.mfa.models import Passkey

TOTP, RECOVERY, WEBAUTHN = "totp", "recovery", "webauthn"
# How each code method's code must look: its parser (None: it cannot be one), and the API's error then
# (a page says it as a sentence). A passkey answers with a credential instead (passkeys.py).
CODE_FORMS: dict[str, tuple[Callable[[object], str | None], str]] = {
    TOTP: (totp.parse_code, "code must be the six digits the authenticator app shows"),
    RECOVERY: (recovery.normalise, "code must be a recovery code: ten letters and digits"),
}


def has_passkey(user: object) -> bool:
    return Passkey.objects.filter(user_id=getattr(user, "pk", None)).exists()


def has_factor(user: object) -> bool:
    """Whether the account has a second factor of its own (an app or a passkey)."""
    return totp.confirmed_device(user) is not None or has_passkey(user)


def methods_of(user: object) -> list[str]:
    """The account's ways to finish a sign-in, in the order POST /api/login lists them; empty: no
    second factor. Recovery codes stand in for a factor the user has lost, so alone they are not one."""
    app, keys = totp.confirmed_device(user) is not None, has_passkey(user)
    if not (app or keys):
        return []
    methods = [TOTP] if app else []
    if recovery.remaining(user):
        methods.append(RECOVERY)
    return methods + [WEBAUTHN] if keys else methods


def forget_codes_if_alone(user: object) -> int:
    """After a factor was removed: recovery codes stood in for the account's factors, so when none is
    left they go too; how many unused ones went."""
    if has_factor(user):
        return 0
    unused = recovery.remaining(user)
    recovery.remove_all(user)
    return unused


def codes_for_new_factor(user: object, first: bool, ip: str) -> list[str] | None:
    """The recovery codes to show once, now that a factor was added: a new set when it is the
    account's first factor (`first`, known before it was added) or no code is left; else None, and
    the set the user already keeps stands."""
    if not first and recovery.remaining(user):
        return None
    codes = recovery.new_set(user)
    audit.changed(getattr(user, "pk", 0), ip, "recovery codes made")
    return codes


@dataclass(frozen=True)
class Removed:
    app: bool
    passkeys: int
    recovery_codes: int  # unused ones


def remove_all(user: object) -> Removed:
    """Take every second factor of the account: its app, its passkeys and its recovery codes."""
    with transaction.atomic():
        had_app = totp.remove(user)
        passkeys = Passkey.objects.filter(user_id=getattr(user, "pk", None)).delete()[0]
        unused = recovery.remaining(user)
        recovery.remove_all(user)
    return Removed(had_app, passkeys, unused)
