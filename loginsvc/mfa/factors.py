"""Which second factors an account has, named as POST /api/login reports them, and how their codes look."""
from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from loginsvc.mfa import recovery, totp

TOTP, RECOVERY = "totp", "recovery"
# How each method's code must look: its parser (None: it cannot be one), and the API's error then
# (a page says it as a sentence).
CODE_FORMS: dict[str, tuple[Callable[[object], str | None], str]] = {
    TOTP: (totp.parse_code, "code must be the six digits the authenticator app shows"),
    RECOVERY: (recovery.normalise, "code must be a recovery code: ten letters and digits"),
}


def methods_of(user: object) -> list[str]:
    """The account's ways to finish a sign-in, in the order a page offers them; empty: no second factor.
    Recovery codes stand in for a factor the user has lost, so alone they are not one."""
    if totp.confirmed_device(user) is None:
        return []
    return [TOTP, RECOVERY] if recovery.remaining(user) else [TOTP]


def remove_all(user: object) -> tuple[bool, int]:
    """Take the account's authenticator app and its recovery codes (which stood in for it): whether
    there was an app, and how many codes were unused."""
    with transaction.atomic():
        had_app = totp.remove(user)
        unused = recovery.remaining(user)
        recovery.remove_all(user)
    return had_app, unused
