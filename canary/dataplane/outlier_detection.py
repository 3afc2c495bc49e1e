"""Passive (outlier) detection: errors and runs of 5xx eject a node at once, Envoy-style."""
from __future__ import annotations

from typing import Callable

from canary.config.settings import OutlierConfig
from canary.dataplane.cluster import Node


class OutlierDetector:
    """Ejection time = base x number of ejections, capped; at most max_ejection_percent of a cluster
    (but always at least one node) is ejected for 5xx/timeouts, while a node that refuses connections is
    always taken out and stays out until the active health check has seen `healthy_threshold` good answers."""

    def __init__(self, cfg: OutlierConfig, on_change: Callable[[], None]) -> None:
        self.cfg = cfg
        self.on_change = on_change
        self.ejections_total: dict[tuple[str, str, str], int] = {}

    def forget(self, cluster: str, node: str) -> None:
        """Drop the ejection counters of a node removed at run time (its other series vanish with it)."""
        for key in [k for k in self.ejections_total if k[0] == cluster and k[1] == node]:
            del self.ejections_total[key]

    def _count(self, node: Node, reason: str) -> None:
        key = (node.cluster.name, node.name, reason)
        self.ejections_total[key] = self.ejections_total.get(key, 0) + 1

    def response(self, node: Node, status: int, now: float) -> None:
        """A node answered: a 5xx extends its run of errors (ejected at `consecutive_5xx`), anything else
        ends the run."""
        if status < 500:
            node.consecutive_5xx = 0
            return
        node.consecutive_5xx += 1
        if node.consecutive_5xx >= self.cfg.consecutive_5xx:
            node.consecutive_5xx = 0
            self.eject(node, now, "consecutive_5xx")

    def connect_failure(self, node: Node, now: float, reason: str = "connect_failure") -> None:
        """Refused/reset: out regardless of the max ejection share, back only after `healthy_threshold` good checks."""
        if node.removed:
            return    # an in-flight request of a node removed at run time: nothing left to take out
        first = not node.down_until_healthy
        node.down_until_healthy = True
        node.hc_ok = 0
        if first:
            node.ejections += 1
            self._count(node, reason)
            self.on_change()

    def eject(self, node: Node, now: float, reason: str) -> bool:
        if node.ejected_until > now or node.down_until_healthy or node.removed:
            return False
        nodes = node.cluster.nodes
        ejected = sum(1 for n in nodes if n.ejected_until > now)
        limit = max(1, len(nodes) * self.cfg.max_ejection_percent // 100)
        if ejected >= limit:
            return False
        node.ejections += 1
        node.ejected_until = now + min(self.cfg.base_ejection_time * node.ejections, self.cfg.max_ejection_time)
        self._count(node, reason)
        self.on_change()
        return True
