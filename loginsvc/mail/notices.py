"""Notices to account holders about changes to their account: what happened, when, from where, what to do."""
from __future__ import annotations

from typing import Any

from django.utils import timezone

from loginsvc.mail import messages


def _when() -> str:
    return timezone.now().strftime("%Y-%m-%d %H:%M")


def password_changed(user: Any, ip: str, how: str) -> None:
    """The password of `user` was changed (`how`: "changed" on the account page or API, "reset" with a
    mailed code), from `ip`; queued in the caller's transaction."""
    messages.queue("password_changed", user.email, {"email": user.email, "when": _when(), "address": ip,
                                                    "reset": how == "reset"})


def mfa_reset(user: Any) -> None:
    """Ops took every second factor of `user` (manage.py mfa_reset)."""
    messages.queue("mfa_reset", user.email, {"email": user.email, "when": _when()})


def recovery_code(email: str, code: str) -> None:
    """A recovery code for `email`, sent only if an active account has that address (decided at
    delivery, so that asking costs the same whether it has one: selfservice/recovery.py)."""
    messages.queue("recovery_code", email, {"email": email, "code": code,
                                            "minutes": _minutes()}, needs_account=True)


def _minutes() -> int:
    from loginsvc import conf

    return conf.get("RECOVERY_CODE_SECONDS") // 60
