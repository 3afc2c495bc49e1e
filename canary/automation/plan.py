"""Ramp plans: the canary's share stepped 12 -> 20 -> 50 -> 100 %, each step held, judged, then passed, extended or ended.

A plan may begin with a mirror step (`mirror:25,12,20,50,100`): share 0 %, that share of the safe requests
copied to the canary (canary/dataplane/mirror.py), the copies' answers judged against stable's answers to
the same requests; only if they pass does the first user go there. While it holds, the plan's `phase` is
"mirror" (its index stays 0: the first user step comes next).

A plan lives in the shared state document (`state["plan"]`, next to the share it drives), so it survives a
router restart and every router shows the same; the one router holding the automation lease (lease.py)
steps it. The functions here only change a state document: they run inside `change()`, which re-reads the
stored document first, so two routers (or an operator and the driver) never undo each other. Every decision
is appended to `state["plan_history"]` with its figures (`canary plan history`).
"""
from __future__ import annotations

import time
from typing import Any

from canary.automation.analysis import Verdict

HISTORY_KEEP = 200
LIVE = ("running", "paused")
MIRROR: str = "mirror"     # the plan's phase while its mirror step holds


class PlanError(Exception):
    """A plan verb that cannot apply (bad steps, no plan to pause, ...): the admin API answers 400/409."""

    def __init__(self, message: str, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict


def parse_steps(value: Any) -> list[float]:
    """"12,20,50,100" or [12, 20, 50, 100] -> rising percentages in (0, 100]."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise PlanError("steps: give rising percentages, e.g. 12,20,50,100")
    steps: list[float] = []
    for item in items:
        try:
            p = float(item)
        except (TypeError, ValueError):
            raise PlanError(f"steps: {item!r} is not a number") from None
        if isinstance(item, bool) or not 0 < p <= 100 or p != p:
            raise PlanError(f"steps: {item!r} must be above 0 and at most 100")
        if steps and p <= steps[-1]:
            raise PlanError(f"steps: must rise ({p:g} after {steps[-1]:g})")
        steps.append(p)
    return steps


def parse_plan(value: Any) -> tuple[float | None, list[float]]:
    """Steps with an optional leading mirror step: "mirror:25,12,20,50,100" (or a list) -> (25.0, [12, ...]);
    a bare "mirror" copies every safe request."""
    items = value.split(",") if isinstance(value, str) else value
    if isinstance(items, list) and items and isinstance(items[0], str) and items[0].strip().startswith("mirror"):
        name, _, pct = items[0].strip().partition(":")
        try:
            mirror = float(pct) if pct else 100.0
        except ValueError:
            raise PlanError(f"steps: {items[0]!r}: a mirror step is mirror:PERCENT, e.g. mirror:25") from None
        if name != "mirror" or not 0 < mirror <= 100 or mirror != mirror:
            raise PlanError(f"steps: {items[0]!r}: a mirror step is mirror:PERCENT, above 0 and at most 100")
        return mirror, parse_steps(items[1:])
    return None, parse_steps(items)


def mirroring(plan: dict[str, Any]) -> bool:
    """Whether the plan is in its mirror step (share 0 %, copies judged)."""
    return plan.get("phase") == MIRROR


def step_name(plan: dict[str, Any]) -> str:
    if mirroring(plan):
        return f"mirror step ({plan['mirror']:g} % of safe requests copied)"
    return f"step {plan['index'] + 1}/{len(plan['steps'])} ({plan['steps'][plan['index']]:g} %)"


def _mirror_on(state: dict[str, Any], plan: dict[str, Any]) -> None:
    state["percent"] = 0.0
    state["mirror"] = {"cluster": plan["canary"], "percent": plan["mirror"]}


def parse_hold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 86400:
        raise PlanError(f"hold: seconds between 1 and 86400, got {value!r}")
    return float(value)


def live(state: dict[str, Any]) -> dict[str, Any] | None:
    plan = state.get("plan")
    return plan if isinstance(plan, dict) and plan.get("status") in LIVE else None


def record(state: dict[str, Any], decision: str, reason: str, figures: dict[str, Any] | None = None,
           now: float | None = None) -> dict[str, Any]:
    """Append one decision to the history (bounded) and return it."""
    plan = state.get("plan") or {}
    entry = {"at": now if now is not None else time.time(), "plan": plan.get("id"), "step": plan.get("index"),
             "phase": plan.get("phase"), "percent": state.get("percent"), "decision": decision, "reason": reason, "figures": figures or {}}
    history = [h for h in state.get("plan_history", []) if isinstance(h, dict)]
    state["plan_history"] = (history + [entry])[-HISTORY_KEEP:]
    return entry


def start(state: dict[str, Any], steps: list[float], hold: float, now: float, mirror: float | None = None) -> None:
    if live(state) is not None:
        raise PlanError(f"a plan is already {state['plan']['status']}: abort it first", conflict=True)
    plan = state["plan"] = {"id": f"plan-{int(now)}", "steps": steps, "hold": hold, "index": 0, "status": "running",
                            "started_at": now, "step_started_at": now, "extensions": 0, "last_verdict": None,
                            "stable": state.get("stable"), "canary": state.get("canary"), "mirror": mirror}
    what = f"steps {','.join(f'{s:g}' for s in steps)}, hold {hold:g} s"
    if mirror is not None:
        plan["phase"] = MIRROR
        _mirror_on(state, plan)
        record(state, "start", f"{what}: share 0 %, {mirror:g} % of safe requests copied to {plan['canary']} first",
               now=now)
        return
    state["percent"] = steps[0]
    record(state, "start", f"{what}: share {steps[0]:g} %", now=now)


def _require(state: dict[str, Any], status: str | tuple[str, ...]) -> dict[str, Any]:
    plan = live(state)
    wanted = (status,) if isinstance(status, str) else status
    if plan is None or plan["status"] not in wanted:
        have = plan["status"] if plan else "no plan running"
        raise PlanError(f"no {' or '.join(wanted)} plan ({have})", conflict=True)
    return plan


def pause(state: dict[str, Any], reason: str, now: float) -> None:
    plan = _require(state, "running")
    plan.update(status="paused", paused_reason=reason)
    record(state, "pause", reason, now=now)


def resume(state: dict[str, Any], now: float) -> None:
    """The current step's hold starts again: what happened while paused is not judged as part of it."""
    plan = _require(state, "paused")
    plan.update(status="running", step_started_at=now, extensions=0, paused_reason=None)
    if mirroring(plan):
        _mirror_on(state, plan)
    else:
        state["percent"] = plan["steps"][plan["index"]]
    record(state, "resume", f"{step_name(plan)} held again from now", now=now)


def end(state: dict[str, Any], status: str, reason: str, now: float, figures: dict[str, Any] | None = None) -> bool:
    """End a live plan (aborted, rolled_back, promoted); False when there is none (a plain promote/rollback)."""
    plan = live(state)
    if plan is None:
        return False
    if mirroring(plan):
        state["mirror"] = None          # the plan's copies end with it
    plan.update(status=status, ended_at=now)
    record(state, status, reason, figures, now=now)
    return True


def abort(state: dict[str, Any], now: float) -> None:
    """Argo Rollouts' abort: the plan stops and every new session goes back to the stable cluster."""
    _require(state, LIVE)
    state["percent"] = 0.0
    end(state, "aborted", "aborted by an operator: share 0 %", now)


def deadline(plan: dict[str, Any]) -> float:
    """When the current hold (with its extensions) ends, wall-clock seconds."""
    return plan["step_started_at"] + plan["hold"] * (1 + plan.get("extensions", 0))


def stable_window(plan: dict[str, Any], percent: float, now: float) -> tuple[float, float]:
    """The seconds the stable cluster is judged over: the hold's own, but at a 100 % step stable gets no
    traffic, so then the previous hold's (or, for a plan that starts at 100 %, as long before it started)."""
    if percent < 100:
        return plan["step_started_at"], now
    if plan.get("previous_hold"):
        start, end = plan["previous_hold"]
        return start, end
    return plan["started_at"] - plan["hold"], plan["started_at"]


def due(state: dict[str, Any], now: float) -> bool:
    plan = live(state)
    return plan is not None and plan["status"] == "running" and now >= deadline(plan)


def decide(state: dict[str, Any], verdict: Verdict, max_extensions: int, now: float) -> str:
    """Apply a hold's verdict: next step (or promotion after the last), rollback, extension or pause.
    Returns the decision's name (the alert to send)."""
    plan = _require(state, "running")
    plan["last_verdict"] = {"at": now, "step": plan["index"], "phase": plan.get("phase"), **verdict.as_dict()}
    step = step_name(plan)
    if verdict.outcome == "fail":
        state["percent"] = 0.0
        end(state, "rolled_back", f"{step} failed: {verdict.reason}; rolled back to 0 %", now, verdict.figures)
        return "plan_rollback"
    if verdict.outcome == "inconclusive":
        if plan.get("extensions", 0) < max_extensions:
            plan["extensions"] = plan.get("extensions", 0) + 1
            record(state, "extend", f"{step} inconclusive ({verdict.reason}): hold extended "
                   f"({plan['extensions']}/{max_extensions})", verdict.figures, now)
            return "plan_extended"
        plan.update(status="paused", paused_reason=f"{step} still inconclusive: {verdict.reason}")
        record(state, "pause", plan["paused_reason"], verdict.figures, now)
        return "plan_paused"
    if mirroring(plan):                 # the first users go there now: the copies have done their part
        state["mirror"] = None
        plan.update(phase=None, step_started_at=now, extensions=0, previous_hold=[plan["step_started_at"], now])
        state["percent"] = plan["steps"][0]
        record(state, "pass", f"{step} passed ({verdict.reason}): share {state['percent']:g} %", verdict.figures, now)
        return "plan_step"
    if plan["index"] + 1 < len(plan["steps"]):
        plan.update(index=plan["index"] + 1, step_started_at=now, extensions=0,
                    previous_hold=[plan["step_started_at"], now])
        state["percent"] = plan["steps"][plan["index"]]
        record(state, "pass", f"{step} passed ({verdict.reason}): share {state['percent']:g} %",
               verdict.figures, now)
        return "plan_step"
    state["stable"], state["canary"], state["percent"] = state["canary"], state["stable"], 0.0
    end(state, "promoted", f"{step} passed ({verdict.reason}): {state['stable']} promoted to stable",
        now, verdict.figures)
    return "plan_promoted"


def progress(state: dict[str, Any], now: float) -> dict[str, Any] | None:
    """What `canary status` shows: step, time left in it, the last verdict with its figures."""
    plan = state.get("plan")
    if not isinstance(plan, dict):
        return None
    out = {k: plan.get(k) for k in ("id", "status", "steps", "hold", "index", "extensions", "last_verdict",
                                    "paused_reason", "started_at", "ended_at", "mirror", "phase")}
    out["step"] = plan["index"] + 1
    out["time_left"] = round(max(0.0, deadline(plan) - now), 1) if plan.get("status") == "running" else None
    return out
