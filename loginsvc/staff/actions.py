"""What staff do to an account, as plain functions: each ends what it must and is audited with the staff member.

Every function takes the staff member and the client address; the audit line names both (the
account by id, the staff member by `staff_id`), so the trail of an account shows who acted. The
rights-ending ones go through the one mechanism every flow uses: a change to the account that
ends all of its sign-ins (accounts/sign_ins.py), in the same transaction as the change.
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from loginsvc.accounts import auth_epoch, session_registry
from loginsvc.accounts.models import User
from loginsvc.mail import notices
from loginsvc.mfa import factors
from loginsvc.selfservice import sessions
from loginsvc.staff.trail import STAFF_ID

log = logging.getLogger("loginsvc.audit")


class NotAllowed(Exception):
    """This staff member may not act on that account (the message says why)."""


def check_may_act(staff: Any, user: User) -> None:
    """Staff act on end users' accounts; only a superuser on staff or superuser accounts (resetting an
    admin's second factor would take away what guards the admin), and nobody on their own here."""
    if user.pk == staff.pk:
        raise NotAllowed("not on your own account (your account page and sign out everywhere are for that)")
    if (user.is_staff or user.is_superuser) and not staff.is_superuser:
        raise NotAllowed("only a superuser may act on staff accounts")


def audited(staff: Any, user: User, what: str, ip: str, **details: Any) -> None:
    """The audit line of one admin action on `user`."""
    log.warning("admin: " + what, extra={"user_id": user.pk, STAFF_ID: staff.pk, "client_ip": ip, **details})


def set_active(staff: Any, user: User, ip: str, active: bool) -> bool:
    """Deactivate (every session and product sign-in ends at once: models.User.save) or activate the
    account; False when it already was so."""
    check_may_act(staff, user)
    if user.is_active == active:
        return False
    user.is_active = active
    user.save(update_fields=["is_active"])
    audited(staff, user, "account activated" if active else "account deactivated", ip)
    return True


def deactivate(staff: Any, user: User, ip: str) -> bool:
    return set_active(staff, user, ip, False)


def activate(staff: Any, user: User, ip: str) -> bool:
    return set_active(staff, user, ip, True)


def force_password_reset(staff: Any, user: User, ip: str) -> None:
    """End the password: every sign-in ends, the owner is mailed how to choose a new one (/recover/)."""
    check_may_act(staff, user)
    with transaction.atomic():
        user.set_unusable_password()
        user.save(update_fields=["password"])
        notices.password_reset_required(user)
    audited(staff, user, "password reset forced", ip)


def reset_factors(staff: Any, user: User, ip: str) -> factors.Removed:
    """Take every second factor, as `manage.py mfa_reset` does: the owner is told, every sign-in ends."""
    check_may_act(staff, user)
    with transaction.atomic():
        removed = factors.remove_all(user)
        notices.mfa_reset(user)
    auth_epoch.sign_out_everywhere(user, by=f"admin:{staff.pk}", ip=ip)
    audited(staff, user, "second factors reset", ip, passkeys=removed.passkeys, app=removed.app)
    return removed


def end_sessions(staff: Any, user: User, ip: str) -> None:
    """Sign the account out everywhere: sessions, product sign-ins, tokens."""
    check_may_act(staff, user)
    auth_epoch.sign_out_everywhere(user, by=f"admin:{staff.pk}", ip=ip)
    audited(staff, user, "signed out everywhere", ip)


def end_session(staff: Any, user: User, public_id: str, ip: str) -> bool:
    """End one session of `user` with its product sign-ins; False when it is not live."""
    check_may_act(staff, user)
    session = session_registry.find(user, public_id)
    if session is None:
        return False
    sessions.end_session(user, session, ip, by=f"admin:{staff.pk}")
    audited(staff, user, "session ended", ip)
    return True
