"""Active health checks: GET each node's /readyz; unhealthy/healthy thresholds flip the node's health."""
from __future__ import annotations

import asyncio
from typing import Callable

from canary.config.settings import HealthCheckConfig
from canary.dataplane.cluster import Node


class HealthChecker:
    """One task per node. A node marked down by a connect failure needs `healthy_threshold` good checks to return,
    which is also how a whole healed cluster comes back (then ramped by slow start in routing).

    Tasks are keyed by node so run-time membership changes (canary/discovery/membership.py) can start and cancel
    the check of one node without touching the others."""

    def __init__(self, cfg: HealthCheckConfig, on_change: Callable[[], None]) -> None:
        self.cfg = cfg
        self.on_change = on_change
        self.tasks: dict[Node, asyncio.Task] = {}
        self.started = False
        self.checks_total = 0
        self.failures_total = 0

    def start(self, nodes: list[Node]) -> None:
        """Check `nodes` from now on; membership changes add and remove nodes one at a time."""
        self.started = True
        for n in nodes:
            self.add(n)

    def add(self, node: Node) -> None:
        """Start checking a node (no-op before start(), which is given every node of the time)."""
        if self.started and node not in self.tasks:
            self.tasks[node] = asyncio.get_running_loop().create_task(self._run(node))

    def remove(self, node: Node) -> None:
        t = self.tasks.pop(node, None)
        if t is not None:
            t.cancel()

    def stop(self) -> None:
        self.started = False
        for t in self.tasks.values():
            t.cancel()
        self.tasks = {}

    async def probe(self, node: Node) -> bool:
        req = (f"GET {self.cfg.path} HTTP/1.1\r\nHost: {node.host}:{node.port}\r\n"
               f"User-Agent: canary-health-check\r\nConnection: close\r\n\r\n").encode()
        writer = None
        try:
            async with asyncio.timeout(self.cfg.timeout):
                reader, writer = await asyncio.open_connection(node.host, node.port)
                writer.write(req)
                line = await reader.readline()
                parts = line.split(None, 2)
                return len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1] == b"200"
        except (OSError, TimeoutError, ValueError):
            return False
        finally:
            if writer is not None:
                writer.close()

    def record(self, node: Node, ok: bool) -> None:
        self.checks_total += 1
        cfg = self.cfg
        if ok:
            node.hc_fail = 0
            node.hc_ok += 1
            if (not node.hc_healthy or node.down_until_healthy) and node.hc_ok >= cfg.healthy_threshold:
                node.hc_healthy = True
                node.down_until_healthy = False
                self.on_change()
        else:
            self.failures_total += 1
            node.hc_ok = 0
            node.hc_fail += 1
            if node.hc_healthy and node.hc_fail >= cfg.unhealthy_threshold:
                node.hc_healthy = False
                self.on_change()

    async def _run(self, node: Node) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            self.record(node, await self.probe(node))
            await asyncio.sleep(max(0.0, self.cfg.interval - (loop.time() - t)))
