"""DNS discovery (Envoy's STRICT_DNS): a cluster's nodes are every address its DNS name resolves to.

Why: on Kubernetes a cluster is a headless Service whose name resolves to its pods. Sending to a
Service's virtual IP instead would hide the pods behind kube-proxy, so the router's own health
checks, outlier detection and panic mode would see one node; and Kubernetes drops not-ready pods
from a Service — when Redis is down every pod is not ready, and a cluster with no endpoints cannot
be routed to even in panic mode. With `publishNotReadyAddresses` the name keeps returning every
pod, and the router decides.

Each router instance resolves by itself every `dns_refresh` seconds (the answer is the shared
truth, so it is not put in the shared state). A failed or empty answer keeps the last known nodes
(Envoy does the same): a DNS hiccup must not empty a cluster. Nodes are named CLUSTER-ADDRESS
(dots kept, ':' of IPv6 as '-'), so a pod keeps its name, health and counters while its address
stays the same.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Awaitable, Callable

from canary.config.settings import ClusterConfig, NodeConfig
from canary.dataplane.cluster import Cluster
from canary.discovery.membership import Membership

log = logging.getLogger("canary.dns")
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, sorted and without duplicates (the system resolver)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def node_configs(cluster: str, addresses: list[str], port: int) -> list[NodeConfig]:
    return [NodeConfig(name=f"{cluster}-{a.replace(':', '-')}", host=a, port=port) for a in addresses]


class DnsDiscovery:
    """One task per DNS cluster; `resolver` is the system resolver unless a test passes another."""

    def __init__(self, cluster_configs: list[ClusterConfig], membership: Membership,
                 resolver: Resolver = resolve) -> None:
        self.cluster_configs = cluster_configs
        self.membership = membership
        self.resolver = resolver
        self.tasks: list[asyncio.Task] = []
        self.failures = 0
        self._last_error: dict[str, str] = {}

    def clusters(self) -> list[tuple[Cluster, tuple[str, int], float]]:
        by_name = {c.name: c for c in self.membership.clusters}
        return [(by_name[c.name], c.dns, c.dns_refresh) for c in self.cluster_configs if c.dns is not None]

    async def refresh(self, cluster: Cluster, host: str, port: int) -> bool:
        """Resolve once and apply; returns whether the answer was usable."""
        try:
            addresses = await asyncio.wait_for(self.resolver(host, port), timeout=5.0)
        except (OSError, asyncio.TimeoutError, UnicodeError) as e:
            self._failed(cluster.name, f"{host}: {e or type(e).__name__}")
            return False
        if not addresses:
            self._failed(cluster.name, f"{host}: no addresses")
            return False
        if self._last_error.pop(cluster.name, None) is not None:
            log.info("cluster %s: %s resolves again", cluster.name, host)
        self.membership.apply_discovered(cluster, node_configs(cluster.name, addresses, port))
        return True

    def _failed(self, cluster: str, message: str) -> None:
        self.failures += 1
        if self._last_error.get(cluster) != message:   # logged once per distinct problem, not every refresh
            self._last_error[cluster] = message
            log.error("cluster %s: DNS discovery failed (%s); keeping its last known nodes", cluster, message)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._run(c, dns, every)) for c, dns, every in self.clusters()]

    async def _run(self, cluster: Cluster, dns: tuple[str, int], every: float) -> None:
        while True:
            await self.refresh(cluster, *dns)
            await asyncio.sleep(every)

    def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
