"""`canary plan start STEPS --hold SECONDS`, `plan pause|resume|abort` and `plan history [--json]`."""
from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Callable
from typing import Any

from canary.automation.plan import PlanError, parse_plan


def when(at: float | None) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ") if at else "-"


def describe(progress: dict[str, Any] | None) -> str:
    """One line for `canary status`: step, time left in it, the last verdict with its figures."""
    if not progress:
        return "plan: none"
    steps = ",".join(f"{s:g}" for s in progress["steps"])
    if progress.get("mirror") is not None:
        steps = f"mirror:{progress['mirror']:g}," + steps
    step = "mirror step" if progress.get("phase") == "mirror" else f"step {progress['step']}/{len(progress['steps'])}"
    line = f"plan {progress['id']}: {progress['status']}, {step} of {steps}"
    if progress["time_left"] is not None:
        line += f", {progress['time_left']:g} s left in it"
    if progress.get("extensions"):
        line += f" (extended {progress['extensions']}x)"
    if progress.get("paused_reason") and progress["status"] == "paused":
        line += f"; paused: {progress['paused_reason']}"
    verdict = progress.get("last_verdict")
    if verdict:
        which = "mirror step" if verdict.get("phase") == "mirror" else f"step {verdict['step'] + 1}"
        line += f"\n  last verdict ({which}): {verdict['outcome']}: {verdict['reason']}"
    return line


def add_parser(sub: Any, admin_help: str) -> None:
    v = sub.add_parser("plan", help="automated ramp: start STEPS --hold S, pause, resume, abort, history")
    v.add_argument("action", choices=["start", "pause", "resume", "abort", "history"])
    v.add_argument("steps", nargs="?", metavar="STEPS", help="start: rising percentages, e.g. 12,20,50,100, optionally after a "
                   "mirror step: mirror:25,12,20,50,100")
    v.add_argument("--hold", type=float, help="start: seconds each step is held before its verdict")
    v.add_argument("--json", action="store_true", help="history: print the raw JSON")
    v.add_argument("--admin", default=argparse.SUPPRESS, help=admin_help)


def plan_verb(a: argparse.Namespace, call_admin: Callable[..., dict[str, Any]],
              die: Callable[[str], Any], print_status: Callable[[dict[str, Any]], None]) -> int:
    if a.action == "history":
        doc = call_admin(a.admin, "GET", "/api/plan/history")
        if a.json:
            print(json.dumps(doc, indent=2, sort_keys=True))
            return 0
        print(describe(doc["plan"]))
        for h in doc["history"]:
            print(f"{when(h['at'])}  {h['plan'] or '-':<16} {h['decision']:<12} share={h['percent']:g}%  {h['reason']}")
        return 0
    body: dict[str, Any] = {}
    if a.action == "start":
        if a.steps is None or a.hold is None:
            die("plan start: give STEPS and --hold SECONDS, e.g. plan start 12,20,50,100 --hold 300")
        try:
            parse_plan(a.steps)               # a bad list is refused here, with the same message as the API's
            body = {"steps": a.steps, "hold": a.hold}
        except PlanError as e:
            die(f"plan start: {e}")
    elif a.steps is not None or a.hold is not None:
        die(f"plan {a.action}: takes no STEPS or --hold")
    st = call_admin(a.admin, "POST", f"/api/plan/{a.action}", body, bad_args=(400, 409))
    print_status(st)
    return 0
