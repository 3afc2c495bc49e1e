"""Which second factors an account has, named as POST /api/login reports them."""
from __future__ import annotations

from loginsvc.mfa import recovery, totp

TOTP, RECOVERY = "totp", "recovery"


def methods_of(user: object) -> list[str]:
    """The account's ways to finish a sign-in, in the order a page offers them; empty: no second factor.
    Recovery codes stand in for a factor the user has lost, so alone they are not one."""
    if totp.confirmed_device(user) is None:
        return []
    return [TOTP, RECOVERY] if recovery.remaining(user) else [TOTP]
