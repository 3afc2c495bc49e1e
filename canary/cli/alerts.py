"""`canary alerts [--json]` and `canary alerts test`: what the router has alerted and whether each pipeline took it."""
from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Callable
from typing import Any


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def print_alerts(doc: dict[str, Any]) -> None:
    print("pipelines:" if doc["pipelines"] else "pipelines: none (only the journal; set ALERT_WEBHOOK_URL, "
          "ALERT_SMTP_URL with ALERT_EMAIL_TO, or SENTRY_DSN)")
    for name, p in doc["pipelines"].items():
        print(f"  {name:<40} delivered={p['delivered']} owed={p['owed']} breaker={p['breaker']}"
              + (f" last error: {p['last_error']}" if p["last_error"] else ""))
    print(f"journal: {doc['journal']}")
    for alert in doc["alerts"]:
        states = " ".join(f"{name}={d['state']}" for name, d in alert["deliveries"].items()) or "journal only"
        print(f"{_when(alert['at'])}  {alert['severity']:<8} {alert['text']}"
              + (f" (x{alert['count']})" if alert["count"] > 1 else "") + f"  [{states}]")


def alerts_verb(a: argparse.Namespace, call_admin: Callable[..., dict[str, Any]]) -> int:
    """Exit 0; `alerts test` exits 1 when a pipeline did not take the test alert."""
    if a.action == "test":
        doc = call_admin(a.admin, "POST", "/api/alerts/test")
        if a.json:
            print(json.dumps(doc, indent=2, sort_keys=True))
        else:
            print(f"test alert {doc['alert']} (journal: {doc['journal']})")
            for name, r in doc["results"].items():
                print(f"  {name:<40} {'delivered' if r['delivered'] else 'NOT delivered: ' + r['error']}")
            if not doc["results"]:
                print("  no pipelines configured: the alert is in the journal only")
        return 0 if all(r["delivered"] for r in doc["results"].values()) else 1
    doc = call_admin(a.admin, "GET", "/api/alerts")
    print(json.dumps(doc, indent=2, sort_keys=True)) if a.json else print_alerts(doc)
    return 0
