"""The audit trail: loginsvc.audit lines about an account, also kept as AuditEvent rows for its admin page.

A logging handler, so every audit line that names an account by id (a sign-in, a change, an
admin's action) lands in the trail without each feature writing it twice; the intermediate steps of a
sign-in are left to its outcome line (NOT_KEPT). Lines that name an
account only by its keyed tag (a failed password: the account may not exist) are kept only from
WARNING up (locks, alerts): a row per failed guess would let an attacker write the database at
the rate of their guesses. Rows older than AUDIT_TRAIL_DAYS go with housekeeping (`tidy`).

A line written inside a transaction that rolls back is not kept: the change it tells of did not
happen either. The log line itself always goes out, whatever the database says.
"""
from __future__ import annotations

import datetime
import logging
from typing import Any

STAFF_ID = "staff_id"  # the extra= field naming the staff member behind an admin's action
# Steps of a sign-in that its own outcome line tells (a success names its factors in `amr`, a failure
# of the second step is a warning of its own): a row each would only double a sign-in's writes.
NOT_KEPT = frozenset({"login: second factor required", "login: second factor accepted"})


class AuditTrailHandler(logging.Handler):
    """Attached to the loginsvc.audit logger (settings.LOGGING)."""

    def createLock(self) -> None:  # noqa: N802 - logging's name
        """No handler lock: each thread writes on its own database connection, and a lock held across
        an INSERT would make every audit line of the process wait behind one (on SQLite, behind another
        thread's write transaction that itself waits to log)."""
        self.lock = None  # type: ignore[assignment]

    def emit(self, record: logging.LogRecord) -> None:
        from django.apps import apps

        if not apps.ready:
            return
        from loginsvc.observability.logs import extra_fields

        fields = extra_fields(record)
        user_id, account = fields.pop("user_id", None), str(fields.pop("account", "") or "")
        if user_id is None and not (account and record.levelno >= logging.WARNING):
            return
        if record.msg in NOT_KEPT:
            return
        try:
            _store(record, user_id, account, fields)
        except Exception:  # noqa: BLE001 - no database, or a broken transaction: the log line still went out
            return


def _store(record: logging.LogRecord, user_id: Any, account: str, fields: dict[str, Any]) -> None:
    from django.db import transaction

    from loginsvc.staff.models import AuditEvent

    staff_id = fields.pop(STAFF_ID, None)
    ip = str(fields.pop("client_ip", "") or "")
    fields.pop("request_id", None)
    details = {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in fields.items()}
    event = AuditEvent(
        at=datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc),
        user_id=int(user_id) if str(user_id).isdigit() else None, account=account[:24],
        message=record.getMessage()[:200], level=record.levelname.lower(), client_ip=ip[:64],
        staff_id=staff_id, details=details)
    if transaction.get_connection().in_atomic_block:
        with transaction.atomic():  # a savepoint: a failure here must not break the caller's transaction
            event.save()
    else:
        event.save()


def events_of(user: Any, limit: int = 100) -> list[Any]:
    """The newest `limit` events of an account: by its id, and by its tag (failures, locks)."""
    from django.db.models import Q

    from loginsvc.accounts.audit import account_tag
    from loginsvc.staff.models import AuditEvent

    return list(AuditEvent.objects.filter(Q(user_id=user.pk) | Q(account=account_tag(user.email)))[:limit])


def tidy() -> int:
    """Delete events older than AUDIT_TRAIL_DAYS; how many."""
    from django.utils import timezone

    from loginsvc import conf
    from loginsvc.staff.models import AuditEvent

    cutoff = timezone.now() - datetime.timedelta(days=conf.get("AUDIT_TRAIL_DAYS"))
    return AuditEvent.objects.filter(at__lt=cutoff).delete()[0]
