"""The automation loop of the router holding the lease: plan verdicts at the end of each hold, SLO alerts, proactive shifts.

It runs in the worker with the admin listener (one per router) and gets only what it uses: the state's
`change` and a reader of it, the clusters (for their records), the configuration and `emit` for alerts.
Verdicts judge this router's own records; with several routers behind a balancer each sees its share of
the traffic, a fair sample of the same users (docs/router.md "Ramp plans").
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from canary.automation import plan
from canary.automation.analysis import judge
from canary.automation.lease import Lease
from canary.automation.proactive_shift import ProactiveShift
from canary.automation.slo import SloWatch
from canary.config.settings import AnalysisConfig, ProactiveShiftConfig, SloConfig
from canary.dataplane.cluster import Cluster

log = logging.getLogger("canary.automation")
TICK_SECONDS = 0.5
State = dict[str, Any]
Emit = Callable[..., None]


class Automation:
    """Ticks while it holds the lease; every decision goes through `change` (re-read, applied, stored)."""

    def __init__(self, change: Callable[[Callable[[State], None]], Awaitable[None]], state: Callable[[], State],
                 clusters: dict[str, Cluster], analysis: AnalysisConfig, shift: ProactiveShiftConfig,
                 slo: SloConfig, lease: Lease, emit: Emit) -> None:
        self.change, self.state, self.clusters = change, state, clusters
        self.analysis = analysis
        self.shift = ProactiveShift(shift)
        self.slo = SloWatch(slo)
        self.lease = lease
        self.emit = emit
        self.next_look = 0.0
        self.leader = False
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.lease.release()

    async def run(self) -> None:
        while True:
            try:
                await self.tick(time.time(), time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad tick (store down) must not end the automation
                log.exception("automation tick failed")
            await asyncio.sleep(TICK_SECONDS)

    async def tick(self, wall: float, mono: float) -> None:
        leader = await self.lease.acquire()
        if leader != self.leader:
            log.warning("automation lease %s", "taken: this router drives plans and shifts" if leader else "lost")
            self.leader = leader
        if not leader:
            return
        if plan.due(self.state(), wall):
            await self.end_hold(wall, mono)
        if mono >= self.next_look:
            self.next_look = mono + self.shift.cfg.interval
            await self.look(mono)

    # -- ramp plans -----------------------------------------------------------------------------------
    async def end_hold(self, wall: float, mono: float) -> None:
        state = self.state()
        current = plan.live(state)
        assert current is not None
        canary, stable = self.clusters[state["canary"]], self.clusters[state["stable"]]
        to_mono = mono - wall          # plan times are wall-clock (shared by routers), records monotonic
        since = current["step_started_at"] + to_mono
        if plan.mirroring(current):   # the canary's answers to copies against stable's to the same requests
            verdict = judge(canary.shadow_records.window(since, mono), stable.shadow_records.window(since, mono),
                            self.analysis)
        else:
            base_start, base_end = plan.stable_window(current, state["percent"], wall)
            verdict = judge(canary.records.window(since, mono),
                            stable.records.window(base_start + to_mono, base_end + to_mono), self.analysis)
        decision: list[str] = []

        def apply(s: State) -> None:
            # still due in the stored document: not already decided elsewhere (set, never appended: a change
            # runs again on a newer document when another router wrote in between)
            decision[:] = [plan.decide(s, verdict, self.analysis.max_extensions, wall)] if plan.due(s, wall) else []
        await self.change(apply)
        if decision:
            entry = self.state().get("plan_history", [{}])[-1]
            log.warning("plan: %s", entry.get("reason"))
            self.emit(decision[0], entry.get("reason", verdict.reason), canary.name,
                      figures={"verdict": verdict.outcome, **verdict.figures}, group=False)

    # -- SLO watch and proactive shift ----------------------------------------------------------------
    async def look(self, mono: float) -> None:
        slo_window = self.slo.cfg.window
        for change in self.slo.look({n: c.records.window(mono - slo_window, mono) for n, c in self.clusters.items()}):
            log.warning("slo: %s", change.text)
            self.emit("slo_breach" if change.breached else "slo_ok", change.text, change.cluster,
                      figures=change.figures, group=False)
        window = self.shift.cfg.window
        windows = {name: c.records.window(mono - window, mono) for name, c in self.clusters.items()}
        if not all(c.available for c in self.clusters.values()):
            return   # failover's job, not a shift's
        current = dict(self.state().get("shift") or {})
        for move in self.shift.look(windows, current):
            def apply(s: State, move: Any = move) -> None:
                shift = dict(s.get("shift") or {})
                shift[move.cluster] = move.percent
                s["shift"] = {k: v for k, v in shift.items() if v > 0}
            await self.change(apply)
            log.warning("proactive shift: %s", move.reason)
            self.emit("shift_away" if move.away else "shift_back", move.reason, move.cluster,
                      figures={"percent": move.percent, "before": move.before, **move.figures}, group=False)
