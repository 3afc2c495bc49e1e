"""Cluster and Node: health/ejection/drain state per node and the balancer that picks one."""
from __future__ import annotations

import bisect
from typing import Final, Iterable

from canary.config.settings import ClusterConfig, NodeConfig
from canary.dataplane.limits import ConcurrencyLimit
from canary.dataplane.pin import BUCKETS
from canary.dataplane.records import Records
from canary.dataplane.upstream_pool import Endpoint, Pool

# Latency histogram bounds in seconds (shared by every cluster; rendered at scrape time).
LATENCY_BOUNDS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Node(Endpoint):
    """One backend address. Plain attributes, no locks: everything runs on one event loop."""

    __slots__ = ("name", "cluster", "weight", "label", "served_by", "outstanding",
                 "hc_healthy", "hc_ok", "hc_fail", "ejected_until", "ejections",
                 "down_until_healthy", "drained", "consecutive_5xx", "status_counts", "pool",
                 "current_weight", "errors", "retries", "removed")

    def __init__(self, cfg: NodeConfig, cluster: "Cluster") -> None:
        super().__init__(cfg.host, cfg.port)
        self.name = cfg.name
        self.cluster = cluster
        self.weight = cfg.weight
        self.label = f"{cluster.name}/{cfg.name}"
        self.served_by = b"X-Served-By: " + self.label.encode() + b"\r\n"
        self.outstanding = 0
        self.hc_healthy = True          # optimistic at start; the first checks run immediately
        self.hc_ok = 0
        self.hc_fail = 0
        self.ejected_until = 0.0
        self.ejections = 0
        self.down_until_healthy = False  # set by connect failures: out until `healthy_threshold` good checks
        self.drained = False
        self.consecutive_5xx = 0
        self.status_counts = [0, 0, 0, 0, 0, 0]  # index = status // 100 (0 = local error)
        self.pool: Pool | None = None   # set by Membership before the node takes requests
        self.current_weight = 0         # smooth weighted round robin (nginx)
        self.errors = 0
        self.retries = 0
        self.removed = False            # taken out of its cluster at run time; in-flight requests may remain

    def available(self, now: float) -> bool:
        return (self.hc_healthy and not self.drained and not self.down_until_healthy
                and self.ejected_until <= now)

    def state(self, now: float) -> str:
        if self.drained:
            return "drained"
        if self.down_until_healthy or not self.hc_healthy:
            return "unhealthy"
        if self.ejected_until > now:
            return "ejected"
        return "healthy"


class Cluster:
    """A named set of nodes, its concurrency limit, per-cluster traffic counters and latency histogram."""

    __slots__ = ("name", "nodes", "drained", "available", "lat_counts", "lat_sum", "failovers_in",
                 "limit", "round_robin", "_rr", "usable", "records", "tester_records", "tester_answers",
                 "shadow_records")

    def __init__(self, cfg: ClusterConfig, balancing: str) -> None:
        self.name = cfg.name
        self.nodes = [Node(n, self) for n in cfg.nodes]
        self.drained = False
        self.available = True
        self.lat_counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.lat_sum = 0.0
        self.failovers_in = 0
        self.limit = ConcurrencyLimit(cfg.max_concurrent, cfg.max_queue)   # admission to this cluster
        self.round_robin = balancing == "round_robin"
        self._rr = 0
        self.usable: list[Node] = list(self.nodes)   # cached by refresh(): no per-request health scan
        self.records = Records()
        # testers' requests (testers.py): recorded apart, so neither the plan's analysis, the SLO watch nor
        # the proactive shift judges a cluster by a handful of people trying it out
        self.tester_records = Records()
        self.tester_answers = 0
        # shadow traffic (mirror.py): the copies this cluster answered, or the originals of copies sent elsewhere
        self.shadow_records = Records()

    def observe(self, seconds: float, now: float, ok: bool) -> None:
        """A node of this cluster answered (ok: status < 500) `seconds` after the request head arrived."""
        self.lat_counts[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.lat_sum += seconds
        self.records.answered(now, seconds, ok)

    def observe_tester(self, seconds: float, now: float, ok: bool) -> None:
        """A node of this cluster answered a tester: counted and recorded apart from everyone else's."""
        self.tester_answers += 1
        self.tester_records.answered(now, seconds, ok)

    def records_for(self, bucket: int) -> Records:
        """The records a request of this bucket counts in: a tester's (bucket past the pin buckets) or everyone's."""
        return self.tester_records if bucket >= BUCKETS else self.records

    def refresh(self, now: float) -> bool:
        """Recompute the usable nodes; called on every state change and by the 0.1 s sweeper (ejections
        expire by time, so a node returns at most one sweep late)."""
        self.usable = [n for n in self.nodes if n.available(now)]
        self.available = not self.drained and bool(self.usable)
        return self.available

    def pick(self, now: float, exclude: Iterable[Node] = (), panic: bool = False) -> Node | None:
        """Least outstanding requests (ties rotate) or smooth weighted round robin among usable nodes."""
        if panic:
            # Panic ignores health, never an operator's drain: a drained cluster or node gets nothing.
            cands = [] if self.drained else [n for n in self.nodes if not n.drained and n not in exclude]
        elif exclude:
            cands = [n for n in self.usable if n not in exclude]
        else:
            cands = self.usable
        if not cands:
            return None
        if len(cands) == 1:
            return cands[0]
        if self.round_robin:
            total = 0
            best = cands[0]
            for n in cands:
                n.current_weight += n.weight
                total += n.weight
                if n.current_weight > best.current_weight:
                    best = n
            best.current_weight -= total
            return best
        self._rr += 1
        k = len(cands)
        start = self._rr % k
        best = cands[start]
        for i in range(1, k):
            n = cands[(start + i) % k]
            if n.outstanding * best.weight < best.outstanding * n.weight:
                best = n
        return best

    def find(self, name: str) -> Node | None:
        for n in self.nodes:
            if name in (n.name, n.label, f"{n.host}:{n.port}"):
                return n
        return None
