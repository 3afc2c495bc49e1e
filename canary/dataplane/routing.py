"""Choose the cluster for a request: pin bucket + share, failover to the healthy side, slow start, panic."""
from __future__ import annotations

from typing import Any

from canary.dataplane.cluster import Cluster, Node
from canary.dataplane.pin import BUCKETS
from canary.dataplane.share import SlowStart, canary_threshold, pick_side, relative_factors


class Routing:
    """Holds the roles (stable/canary), the share and drains; answers `choose(bucket)` cheaply per request.

    Cluster availability is cached by refresh(), called on every health/ejection/drain change and by the
    periodic sweeper (ejections expire by time)."""

    def __init__(self, clusters: list[Cluster], slow_start_window: float, slow_start_min_percent: float) -> None:
        self.clusters = {c.name: c for c in clusters}
        self.order = list(clusters)              # a tester's bucket is BUCKETS + its cluster's index here
        self.stable = clusters[0]
        self.canary = clusters[1]
        self.percent = 0.0
        self.threshold = 0.0
        self.slow = {c.name: SlowStart(slow_start_window, slow_start_min_percent) for c in clusters}
        self.panic = False
        self.panics = 0                          # requests routed while no cluster was healthy
        self.shift: dict[str, float] = {}       # cluster -> percent of its traffic moved to the other one
        self.shift_below: dict[str, int] = {}   # the same, as a bound on shift_rank(bucket)

    # -- state -------------------------------------------------------------------------------------------
    def apply_state(self, state: dict[str, Any], now: float) -> None:
        """Apply a shared-state document (from the file or Redis store)."""
        stable, canary = state.get("stable"), state.get("canary")
        if stable in self.clusters and canary in self.clusters and stable != canary:
            self.stable, self.canary = self.clusters[stable], self.clusters[canary]
        self.set_percent(float(state.get("percent", self.percent)))
        self.set_shift(state.get("shift"))
        drained = set(state.get("drained", []))
        for c in self.clusters.values():
            was = c.drained
            c.drained = c.name in drained
            if was and not c.drained:
                self.slow[c.name].start(now)
            for n in c.nodes:
                n.drained = n.label in drained
        self.refresh(now)

    def set_percent(self, percent: float) -> None:
        self.percent = max(0.0, min(100.0, percent))
        self.threshold = canary_threshold(self.percent)

    def set_shift(self, shift: object) -> None:
        """The proactive shift (proactive_shift.py): which share of each cluster's users goes to the other."""
        shift = shift if isinstance(shift, dict) else {}
        self.shift = {k: max(0.0, min(100.0, float(v))) for k, v in shift.items()
                      if k in self.clusters and isinstance(v, (int, float)) and v > 0}
        self.shift_below = {k: round(v * 100) for k, v in self.shift.items()}

    def refresh(self, now: float) -> None:
        for c in self.clusters.values():
            was = c.available
            if c.refresh(now) and not was:
                self.slow[c.name].start(now)   # fail-back: ramp the healed cluster up, never all at once
        self.panic = not (self.stable.available or self.canary.available)

    # -- per request -------------------------------------------------------------------------------------
    def choose(self, bucket: int, now: float, count: bool = True) -> Cluster:
        if bucket >= BUCKETS:
            return self.tester_cluster(bucket, count)
        s, c = self.stable, self.canary
        if s.available and c.available:
            fc = self.slow[c.name].factor(now) if self.slow[c.name].since is not None else 1.0
            fs = self.slow[s.name].factor(now) if self.slow[s.name].since is not None else 1.0
            if fc == 1.0 and fs == 1.0:
                home = c if bucket < self.threshold else s
            else:
                fc, fs = relative_factors(fc, fs)
                home = c if pick_side(bucket, self.threshold, fc, fs) else s
            if self.shift_below and shift_rank(bucket) < self.shift_below.get(home.name, 0):
                return c if home is s else s
            return home
        if s.available:
            if count and bucket < self.threshold:
                s.failovers_in += 1
            return s
        if c.available:
            if count and bucket >= self.threshold:
                c.failovers_in += 1
            return c
        if count:
            self.panics += 1
        return c if bucket < self.threshold else s

    def tester_cluster(self, bucket: int, count: bool = True) -> Cluster:
        """A tester's cluster whatever the share, slow start or shift; but health wins: a tester whose cluster
        has no usable node fails over like anyone (and panics like anyone when neither has one)."""
        home = self.order[bucket - BUCKETS]
        if home.available or self.panic:
            if count and self.panic:
                self.panics += 1
            return home
        other = self.canary if home is self.stable else self.stable
        if count:
            other.failovers_in += 1
        return other

    def pick_node(self, bucket: int, now: float, tried: list[Node], first: Cluster | None = None) -> Node | None:
        """Node for an attempt: the chosen cluster, else the other cluster, else panic over everything."""
        if first is None:
            first = self.choose(bucket, now)
        other = self.canary if first is self.stable else self.stable
        if not self.panic:
            node = first.pick(now, tried)
            if node is None and other.available:
                node = other.pick(now, tried)
            if node is not None:
                return node
        node = first.pick(now, tried, panic=True)
        if node is None:
            node = other.pick(now, tried, panic=True)
        return node

    def effective_percent(self, now: float) -> float:
        """Share of buckets currently sent to the canary (for status/metrics)."""
        s, c = self.stable, self.canary
        if not (s.available or c.available):
            return self.percent
        if not c.available:
            return 0.0
        if not s.available:
            return 100.0
        fc, fs = relative_factors(self.slow[c.name].factor(now), self.slow[s.name].factor(now))
        t = self.threshold
        canary_b = t * fc + max(0.0, (10000 - t) - (10000 - t) * fs)
        moved_out, moved_in = self.shift.get(c.name, 0.0) / 100, self.shift.get(s.name, 0.0) / 100
        return (canary_b * (1 - moved_out) + (10000 - canary_b) * moved_in) / 100.0


def shift_rank(bucket: int) -> int:
    """A second, independent order of the pin buckets (7919 is prime to 10000): the users a proactive shift
    moves are spread over the whole share, not the ones nearest the canary's threshold, and always the same."""
    return bucket * 7919 % 10000
