"""Notices to account holders about changes to their account: what happened, when, from where, what to do."""
from __future__ import annotations

from typing import Any

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loginsvc import conf
from loginsvc.mail import messages

# What changed, as the notice says it (each a sentence of its own, for translators).
CHANGES = {
    "passkey added": _("A passkey was added to your account."),
    "passkey removed": _("A passkey was removed from your account."),
    "authenticator app added": _("An authenticator app was set up for your account."),
    "authenticator app removed": _("The authenticator app was removed from your account."),
    "recovery codes made": _("A new set of recovery codes was made; the old codes no longer work."),
    "recovery code used": _("One of your recovery codes was used to sign in."),
    "app password created": _("An app password was made for a mail program; it can read and send your mail."),
}


def _when() -> str:
    return timezone.now().strftime("%Y-%m-%d %H:%M")


def password_changed(user: Any, ip: str, how: str) -> None:
    """The password of `user` was changed (`how`: "changed" on the account page or API, "reset" with a
    mailed code), from `ip`; queued in the caller's transaction."""
    messages.queue("password_changed", user.email, {"email": user.email, "when": _when(), "address": ip,
                                                    "reset": how == "reset"})


def account_changed(user: Any, ip: str, change: str) -> None:
    """A change to how `user` signs in (one of CHANGES), made from `ip`; queued in the caller's transaction."""
    messages.queue("account_changed", user.email, {"email": user.email, "when": _when(), "address": ip,
                                                   "change": str(CHANGES[change])})


def new_sign_in(user: Any, ip: str, user_agent: str) -> None:
    """`user` signed in from a device and a network the account had not signed in from before."""
    messages.queue("new_sign_in", user.email, {"email": user.email, "when": _when(), "address": ip,
                                               "browser": _browser(user_agent)})


def _browser(user_agent: str) -> str:
    """A User-Agent as a notice shows it: printable, at most 200 characters."""
    return "".join(c for c in user_agent[:200] if c.isprintable()) or "unknown"


def sign_in_code(user: Any, code: str, ip: str, user_agent: str, minutes: int) -> None:
    """The code that confirms a sign-in held by the account-wide step-up (mfa/mailed_code.py)."""
    messages.queue("sign_in_code", user.email, {"email": user.email, "when": _when(), "address": ip, "code": code,
                                                "browser": _browser(user_agent), "minutes": minutes})


def failed_attempts(email: str, limit: int) -> None:
    """The account-wide defence took over for `email` after `limit` failed attempts: sent only if an active
    account has the address (decided at delivery: the attempts' answers must not tell)."""
    messages.queue("failed_attempts", email, {"email": email, "when": _when(), "limit": limit},
                   needs_account=True)


def mfa_reset(user: Any) -> None:
    """Ops took every second factor of `user` (manage.py mfa_reset)."""
    messages.queue("mfa_reset", user.email, {"email": user.email, "when": _when()})


def password_reset_required(user: Any) -> None:
    """An administrator ended the password of `user`: a new one is chosen with a mailed recovery code."""
    messages.queue("password_reset_required", user.email, {"email": user.email, "when": _when()})


def recovery_code(email: str, code: str) -> None:
    """A recovery code for `email`, sent only if an active account has that address (decided at
    delivery, so that asking costs the same whether it has one: selfservice/recovery.py)."""
    messages.queue("recovery_code", email, {"email": email, "code": code,
                                            "minutes": conf.get("RECOVERY_CODE_SECONDS") // 60}, needs_account=True)


def email_change_code(new_email: str, code: str) -> None:
    """The code that confirms `new_email` as an account's new address (selfservice/emails.py)."""
    messages.queue("email_change_code", new_email, {"email": new_email, "code": code,
                                                    "minutes": conf.get("RECOVERY_CODE_SECONDS") // 60})


def email_changed(old_email: str, new_email: str, undo_code: str, days: int, ip: str) -> None:
    """To the old address: the account moved to `new_email`; `undo_code` takes it back within `days`."""
    messages.queue("email_changed", old_email, {"old": old_email, "new": new_email, "code": undo_code,
                                                "days": days, "address": ip, "when": _when()})

