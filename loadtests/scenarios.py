"""The scenarios of `python -m loadtests run --scenario NAME`: load over time, the steps reported apart, and what each does to the stack.

Each scenario is a pure function of the run's elapsed time for the load (users in the closed model,
a factor of `--rate` in the open one), so every worker of a distributed run computes the same
schedule from its own start; only the master runs the actions (ramping the share, killing a
cluster) and decides when a capacity search has found its limit (loadtests/collect.py; the shape in
loadtests/locustfile.py asks the scenario for users and the end).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loadtests import thresholds
from loadtests.ops import Ops, OpsError, healed

CANARY_STEPS = (12.0, 20.0, 50.0)
CAPACITY_GROWTH = 1.5     # each capacity step offers 1.5x the previous arrival rate
CAPACITY_STEPS = 6
CAPACITY_SLOS = ("p99<1000", "errors<1%")  # when --slo gives none: what "sustainable" means by default
HEADROOM = 1.5            # the seeds' capacity rule: +50 % over the peak
DEFAULT_DURATION = {"steady": 60.0, "ramp": 60.0, "spike": 60.0, "canary-ramp": 90.0, "failover": 90.0,
                    "capacity": 120.0}


@dataclass
class Step:
    """A window reported on its own (summary.json `steps`): seconds since the start of the run."""

    name: str
    start: float
    end: float
    share: float | None = None
    rate: float | None = None          # the offered arrival rate (capacity steps)


Log = Callable[[str, str, dict[str, Any]], None]   # (kind, text, extra): an event on the run's time axis


@dataclass
class Scenario:
    """Steady load for the whole duration; the others change one thing over time."""

    duration: float
    users: int
    rate: float | None = None          # open model: tasks per second in all (None: closed model)
    steps: list[Step] = field(default_factory=list)
    name = "steady"

    def users_at(self, t: float) -> int:
        return self.users if self.rate else max(1, math.ceil(self.users * self.load_factor(t)))

    def rate_at(self, t: float) -> float:
        assert self.rate
        return self.rate * self.load_factor(t)

    def load_factor(self, t: float) -> float:
        return 1.0

    def planned(self) -> list[Step]:
        return []

    def begin(self, ops: Ops | None, log: Log) -> None:
        """Called once on the master at t=0, in its own greenlet: may block (sleeping) until the run ends."""
        self.steps = self.planned()

    def finish(self, ops: Ops | None, log: Log) -> None:
        """Called once on the master after the run: put back what begin() changed."""

    def stop_now(self, t: float) -> bool:
        return t >= self.duration


class Ramp(Scenario):
    """Load grows linearly to its peak over the first 60 %, then holds (how far the tail bends as load comes)."""

    name = "ramp"

    def load_factor(self, t: float) -> float:
        return min(1.0, max(0.1, t / (0.6 * self.duration)))

    def planned(self) -> list[Step]:
        return [Step("ramp-up", 0.0, 0.6 * self.duration), Step("hold", 0.6 * self.duration, self.duration)]


class Spike(Scenario):
    """A quarter of the load, then all of it for the middle fifth, then a quarter again (does it recover?)."""

    name = "spike"

    def load_factor(self, t: float) -> float:
        return 1.0 if 0.4 * self.duration <= t < 0.6 * self.duration else 0.25

    def planned(self) -> list[Step]:
        d = self.duration
        return [Step("before", 0.0, 0.4 * d), Step("spike", 0.4 * d, 0.6 * d), Step("after", 0.6 * d, d)]


class CanaryRamp(Scenario):
    """The seeds' release: the canary's share of new sessions goes 12 % → 20 % → 50 % through the ops API,
    each step a third of the run; its tail is compared with the stable cluster's step by step."""

    name = "canary-ramp"
    original: float | None = None

    def planned(self) -> list[Step]:
        third = self.duration / len(CANARY_STEPS)
        return [Step(f"{share:g} %", i * third, (i + 1) * third, share) for i, share in enumerate(CANARY_STEPS)]

    def begin(self, ops: Ops | None, log: Log) -> None:
        assert ops is not None
        import gevent  # the master's actions run inside Locust, in greenlets

        self.steps = self.planned()
        self.original = float(ops.status()["percent"])
        started = time.monotonic()
        for step in self.steps:
            gevent.sleep(max(0.0, step.start - (time.monotonic() - started)))
            ops.ramp(step.share or 0.0)
            log("share", f"share {step.share:g} %", {"share": step.share})

    def finish(self, ops: Ops | None, log: Log) -> None:
        if ops is not None and self.original is not None:
            ops.ramp(self.original)
            log("share", f"share restored to {self.original:g} %", {"share": self.original})


class Failover(Scenario):
    """A cluster is killed (`python -m deploy kill`) a quarter into the run; supervisord brings it back and
    the router fails back. Reported apart: before, the failover window (kill until the cluster is healthy
    and at full share again), after."""

    name = "failover"
    target: str = ""

    def begin(self, ops: Ops | None, log: Log) -> None:
        assert ops is not None
        import gevent

        started = time.monotonic()
        target = self.target or ops.status()["stable"]
        kill_at = 0.25 * self.duration
        self.steps = [Step("before", 0.0, kill_at), Step("failover", kill_at, self.duration)]
        gevent.sleep(kill_at)
        killed_at = time.monotonic() - started
        try:
            output = ops.kill(target)
        except OpsError as exc:
            log("note", f"kill failed: {exc}", {})
            return
        log("kill", f"killed {target} ({output.count('killed')} processes)", {"target": target})
        self.steps[0].end = self.steps[1].start = killed_at
        while time.monotonic() - started < self.duration:
            gevent.sleep(0.5)
            try:
                if healed(ops.status(), target):
                    break
            except OpsError:
                continue   # the router itself answers during a failover; a blip is not the end of it
        else:
            log("note", f"{target} not back at full share before the end of the run", {})
            return
        back = time.monotonic() - started
        log("heal", f"{target} healthy and at full share again", {"target": target})
        self.steps[1].end = back
        self.steps.append(Step("after", back, self.duration))


class Capacity(Scenario):
    """Open model only: the arrival rate grows 1.5x per step until a step breaks an SLO (--slo, or
    p99<1000 and errors<1%); the last step that held is the stack's sustainable rate."""

    name = "capacity"
    slos: list[thresholds.Slo] = []
    broken_at: int | None = None       # the first step that broke an SLO

    @property
    def step_seconds(self) -> float:
        return self.duration / CAPACITY_STEPS

    def load_factor(self, t: float) -> float:
        return CAPACITY_GROWTH ** min(CAPACITY_STEPS - 1, int(t // self.step_seconds))

    def planned(self) -> list[Step]:
        assert self.rate
        rates = [self.rate * CAPACITY_GROWTH ** i for i in range(CAPACITY_STEPS)]
        return [Step(f"{rate:.3g}/s", i * self.step_seconds, (i + 1) * self.step_seconds, rate=rate)
                for i, rate in enumerate(rates)]

    def stop_now(self, t: float) -> bool:
        return self.broken_at is not None or t >= self.duration


SCENARIOS: dict[str, type[Scenario]] = {cls.name: cls for cls in (Scenario, Ramp, Spike, CanaryRamp, Failover, Capacity)}
NEEDS_OPS = ("canary-ramp", "failover")


def make(name: str, duration: float, users: int, rate: float | None, slos: list[str] | tuple[str, ...] = (),
         kill: str = "") -> Scenario:
    """The scenario NAME with what it alone uses: failover the cluster to kill (default the stable one),
    capacity the SLOs each step is judged on (--slo, else CAPACITY_SLOS)."""
    scenario = SCENARIOS[name](duration=duration, users=users, rate=rate)
    if isinstance(scenario, Failover):
        scenario.target = kill
    if isinstance(scenario, Capacity):
        scenario.slos = thresholds.parse_all(slos or CAPACITY_SLOS)
    return scenario


def capacity_result(steps: list[dict[str, Any]], broken_at: int | None, nodes: dict[str, int],
                    peak: float) -> dict[str, Any]:
    """summary.json `capacity`: the last step that held, its logins/s and session checks/s, and the nodes per
    cluster that carry `peak` (the run's starting --rate) with +50 % headroom when one cluster carries it all,
    as in a failover (the seeds' capacity rule), assuming throughput grows with nodes."""
    held = [s for i, s in enumerate(steps) if broken_at is None or i < broken_at]
    result: dict[str, Any] = {"broken_at_step": None if broken_at is None else steps[broken_at]["name"],
                              "nodes": nodes, "headroom": HEADROOM, "peak_rate": peak}
    if not held:
        result.update(sustainable_rate=None, note="the first step already broke an SLO: start lower (--rate)")
        return result
    last = held[-1]
    seconds = max(1e-9, last["end"] - last["start"])
    per_second = {name: round(fig["count"] / seconds, 2) for name, fig in last["endpoints"].items()}
    serving = max(1, sum(nodes.values()))
    per_node = float(last["rate"]) / serving
    result.update(
        sustainable_rate=last["rate"], requests_per_s=round(last["total"]["count"] / seconds, 2),
        logins_per_s=per_second.get("login", 0.0), session_checks_per_s=per_second.get("session", 0.0),
        per_node_rate=round(per_node, 3),
        nodes_per_cluster_for_headroom=math.ceil(HEADROOM * peak / per_node - 1e-9),
        note=("the limit was not reached: every step held, so the sustainable rate is at least this"
              if broken_at is None else f"step {steps[broken_at]['name']} broke an SLO"))
    return result
