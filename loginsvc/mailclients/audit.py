"""Audit lines of mail clients: app passwords made, used, revoked, and the mail server's checks (never a password)."""
from __future__ import annotations

import logging

from loginsvc.accounts.audit import account_tag

log = logging.getLogger("loginsvc.audit")


def created(user_id: int, ip: str, app_password: str, scope: str) -> None:
    log.info("mail: app password created", extra={"user_id": user_id, "client_ip": ip, "credential_id": app_password,
                                                   "scope": scope})


def revoked(user_id: int, ip: str, app_password: str) -> None:
    log.info("mail: app password revoked", extra={"user_id": user_id, "client_ip": ip, "credential_id": app_password})


def all_revoked(user_id: int, ip: str, by: str) -> None:
    log.info("mail: every app password revoked", extra={"user_id": user_id, "client_ip": ip, "by": by})


def used(user_id: int, ip: str, app_password: str) -> None:
    """A mail client logged in with it (written at most once a minute per password and address)."""
    log.info("mail: app password used", extra={"user_id": user_id, "client_ip": ip, "credential_id": app_password})


def refused(email: str, ip: str, service: str, why: str) -> None:
    """The mail server's check of a login refused it: a wrong or revoked password, or the account's own."""
    log.info("mail: login refused", extra={"account": account_tag(email), "client_ip": ip, "channel": service,
                                           "why": why})
