"""Audit lines of self-service: recovery codes asked and refused, passwords reset and changed (never a code or a password)."""
from __future__ import annotations

import logging

from loginsvc.accounts.audit import account_tag

log = logging.getLogger("loginsvc.audit")


def code_asked(email: str, ip: str) -> None:
    """A recovery code was asked for an address (known or not: the log does not say either)."""
    log.info("recovery: code asked", extra={"account": account_tag(email), "client_ip": ip})


def code_limit(email: str, ip: str) -> None:
    log.warning("recovery: codes per hour reached, none mailed", extra={"account": account_tag(email), "client_ip": ip})


def code_refused(email: str, ip: str, factor: str = "") -> None:
    """A wrong, expired or spent code (or, with `factor`, the right code and a wrong second factor)."""
    log.info("recovery: refused", extra={"account": account_tag(email), "client_ip": ip, "factor": factor or None})


def password_reset(user_id: int, ip: str) -> None:
    log.warning("recovery: password reset with a mailed code", extra={"user_id": user_id, "client_ip": ip})


def password_changed(user_id: int, ip: str) -> None:
    log.info("account: password changed", extra={"user_id": user_id, "client_ip": ip})


def email_change_asked(user_id: int, ip: str) -> None:
    log.info("account: email change asked", extra={"user_id": user_id, "client_ip": ip})


def email_changed(user_id: int, ip: str) -> None:
    log.warning("account: email changed", extra={"user_id": user_id, "client_ip": ip})


def email_change_undone(user_id: int, ip: str) -> None:
    log.warning("account: email change undone by the old address", extra={"user_id": user_id, "client_ip": ip})


def session_ended(user_id: int, ip: str, by: str = "user") -> None:
    """One session ended from the sessions page (by its user) or the admin (`by` the staff member's id)."""
    log.info("account: session ended", extra={"user_id": user_id, "client_ip": ip, "by": by})


def known_source_removed(user_id: int, ip: str, kind: str) -> None:
    log.info("account: known %s removed", kind, extra={"user_id": user_id, "client_ip": ip})
