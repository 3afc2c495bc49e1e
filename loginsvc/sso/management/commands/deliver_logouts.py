"""`manage.py deliver_logouts [--once] [--json] [--status]`: deliver the back-channel logout outbox from this process.

Nodes deliver on their own (a thread per gunicorn worker, sso/backchannel.py); this command is for
ops: drain the outbox while no node runs, or see which products are not taking their logouts.
"""
from __future__ import annotations

import json
import signal
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count, Min, Q
from django.utils import timezone

from loginsvc.sso import backchannel
from loginsvc.sso.models import LogoutDelivery


def status(now: Any = None) -> dict[str, dict[str, int]]:
    """Per product: logouts not tried yet, failing (tried, not delivered), delivered in the last day,
    and the age in seconds of its oldest undelivered logout."""
    now = now or timezone.now()
    rows = (LogoutDelivery.objects.values("application__client_id")
            .annotate(pending=Count("pk", filter=Q(delivered__isnull=True, attempts=0)),
                      failing=Count("pk", filter=Q(delivered__isnull=True, attempts__gt=0)),
                      delivered_last_day=Count("pk", filter=Q(delivered__gte=now - timedelta(days=1))),
                      oldest=Min("created", filter=Q(delivered__isnull=True)))
            .order_by("application__client_id"))
    return {row["application__client_id"]: {
        "pending": row["pending"], "failing": row["failing"], "delivered_last_day": row["delivered_last_day"],
        "oldest_seconds": int((now - row["oldest"]).total_seconds()) if row["oldest"] else 0,
    } for row in rows}


class Command(BaseCommand):
    help = ("Deliver due back-channel logouts (OpenID Connect Back-Channel Logout 1.0) from the outbox: "
            "once, or until SIGTERM/SIGINT. Safe next to running nodes: each logout is claimed by one process.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass over the due logouts, then exit")
        parser.add_argument("--status", action="store_true", help="print pending and failing logouts per product")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args: object, **options: Any) -> None:
        if options["status"]:
            self._print_status(options["json"])
        elif options["once"]:
            backchannel.purge()
            self._print_counts(asdict(backchannel.run()), options["json"])
        else:
            self._print_counts(self._loop(), options["json"])

    def _loop(self) -> dict[str, int]:
        worker = backchannel.Worker()

        def stop(signum: int, frame: object) -> None:
            worker.stopping.set()
            worker.wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        worker.loop()
        return asdict(worker.totals)

    def _print_counts(self, counts: dict[str, int], as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(counts))
        else:
            self.stdout.write(", ".join(f"{name} {value}" for name, value in counts.items()))

    def _print_status(self, as_json: bool) -> None:
        products = status()
        if as_json:
            self.stdout.write(json.dumps(products))
            return
        if not products:
            self.stdout.write("outbox empty")
            return
        self.stdout.write(f"{'product':<24} {'pending':>8} {'failing':>8} {'delivered/24h':>14} {'oldest':>8}")
        for client_id, row in products.items():
            self.stdout.write(f"{client_id:<24} {row['pending']:>8} {row['failing']:>8} "
                              f"{row['delivered_last_day']:>14} {row['oldest_seconds']:>7}s")
