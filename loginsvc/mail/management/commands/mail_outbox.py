"""`manage.py mail_outbox [--status|--failed|--once|--retry-failed] [--json]`: what the mail outbox holds, for ops.

Nodes deliver on their own (a thread per gunicorn worker, mail/delivery.py); this command shows what
is waiting or failed, delivers one pass from here (no node running), or sends failed messages again
once the cause is mended. It shows who a message was for and why it failed, never its text.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count, Min, Q
from django.utils import timezone

from loginsvc.mail import delivery
from loginsvc.mail.models import OutgoingMail


def status(now: Any = None) -> dict[str, int]:
    """Messages waiting (not tried yet, or failing), failed, delivered in the last day; the oldest waiting one's age."""
    now = now or timezone.now()
    waiting = Q(delivered__isnull=True, failed__isnull=True)
    row = OutgoingMail.objects.aggregate(
        pending=Count("pk", filter=waiting & Q(attempts=0)), failing=Count("pk", filter=waiting & Q(attempts__gt=0)),
        given_up=Count("pk", filter=Q(failed__isnull=False)),
        delivered_last_day=Count("pk", filter=Q(delivered__gte=now - timedelta(days=1))),
        oldest=Min("created", filter=waiting))
    row["failed"] = row.pop("given_up")  # not the aggregate's own name: it is a field of the model
    oldest = row.pop("oldest")
    return {**row, "oldest_waiting_seconds": int((now - oldest).total_seconds()) if oldest else 0}


def failed() -> list[dict[str, Any]]:
    rows = OutgoingMail.objects.filter(failed__isnull=False).order_by("failed")
    return [{"id": r.pk, "kind": r.kind, "to": r.to, "created": r.created.isoformat(timespec="seconds"),
             "failed": r.failed.isoformat(timespec="seconds"), "attempts": r.attempts, "last_error": r.last_error}
            for r in rows]


class Command(BaseCommand):
    help = ("The mail outbox: --status (the default) counts what waits, failed or went out; --failed lists the "
            "messages given up; --once delivers one pass from this process; --retry-failed makes the failed "
            "ones due again. Safe next to running nodes: each message is claimed by one process.")

    def add_arguments(self, parser: CommandParser) -> None:
        what = parser.add_mutually_exclusive_group()
        what.add_argument("--status", action="store_true", help="counts (the default)")
        what.add_argument("--failed", action="store_true", help="the messages given up, oldest first")
        what.add_argument("--once", action="store_true", help="one delivery pass, then exit")
        what.add_argument("--retry-failed", action="store_true", help="send the failed messages again")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args: object, **options: Any) -> None:
        as_json = options["json"]
        if options["failed"]:
            rows = failed()
            if as_json:
                self.stdout.write(json.dumps(rows))
            elif not rows:
                self.stdout.write("no failed mail")
            for r in rows if not as_json else []:
                self.stdout.write(f"#{r['id']} {r['failed']} {r['kind']} to {r['to']}: {r['attempts']} attempts, "
                                  f"last error: {r['last_error'] or '-'}")
        elif options["once"]:
            delivery.purge()
            counts = asdict(delivery.run())
            self.stdout.write(json.dumps(counts) if as_json else ", ".join(f"{k} {v}" for k, v in counts.items()))
        elif options["retry_failed"]:
            again = delivery.retry_failed()
            self.stdout.write(json.dumps({"retried": again}) if as_json else f"{again} failed message(s) due again")
        else:
            counts = status()
            self.stdout.write(json.dumps(counts) if as_json else ", ".join(f"{k} {v}" for k, v in counts.items()))
