"""Run-time cluster membership (Envoy's EDS idea): node lists in the shared state, reconciled into live nodes.

The shared state document may hold `nodes = {"blue": [{"name", "address", "weight"}, ...]}`; a cluster
absent from it uses its configured nodes. Because the list lives in the state document it reaches every
router instance through the store (Redis pub/sub or the polled file) and survives restarts, exactly like
the share and the drains. `reconcile()` runs on every applied document and is idempotent and cheap when
nothing changed (the Redis store re-applies the document every 2 s)."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from canary.config.loading import check_name, parse_hostport
from canary.config.settings import ConfigError, NodeConfig
from canary.dataplane.cluster import Cluster, Node
from canary.dataplane.outlier_detection import OutlierDetector
from canary.discovery.health_check import HealthChecker

if TYPE_CHECKING:
    from canary.dataplane.routing import Routing
    from canary.dataplane.upstream_pool import Pool

log = logging.getLogger("canary.membership")
_NODE_KEYS = ("name", "address", "weight")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:")


class MembershipError(ValueError):
    """A bad node list; the message names the entry and the problem (400 from the admin API)."""


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def spec_of(node: Node | NodeConfig) -> dict[str, Any]:
    """The declarative form of a node, as stored in the state and returned by the admin API."""
    return {"name": node.name, "address": format_address(node.host, node.port), "weight": node.weight}


def parse_nodes(raw: Any, cluster: str, cluster_names: list[str]) -> list[NodeConfig]:
    """Validate a node list strictly (same name rules as the config file); raise MembershipError."""
    if not isinstance(raw, list):
        raise MembershipError(f"nodes: expected a list of {{name, address, weight}} objects, got {raw!r}"[:200])
    if not raw:
        raise MembershipError(f"nodes: cluster {cluster!r} needs at least one node (drain it to stop traffic)")
    out: list[NodeConfig] = []
    names: set[str] = set()
    addrs: set[tuple[str, int]] = set()
    for i, n in enumerate(raw):
        key = f"nodes[{i}]"
        if not isinstance(n, dict):
            raise MembershipError(f"{key}: expected an object with name and address")
        for k in n:
            if k not in _NODE_KEYS:
                raise MembershipError(f"{key}.{k}: unknown key (allowed: name, address, weight)")
        name = n.get("name")
        if not isinstance(name, str):
            raise MembershipError(f"{key}.name: required string")
        try:
            check_name(name, f"{key}.name")
            host, port = parse_hostport(n.get("address"), f"{key}.address")
        except ConfigError as e:
            raise MembershipError(str(e)) from None
        # The host ends up in the health check's Host header: letters, digits, '-', '.', ':' (IPv6) only.
        if not set(host) <= _HOST_CHARS or len(host) > 253:
            raise MembershipError(f"{key}.address: invalid host {host!r}")
        if port == 0:
            raise MembershipError(f"{key}.address: port must be 1..65535 in {n.get('address')!r}")
        weight = n.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise MembershipError(f"{key}.weight: must be an integer >= 1, got {weight!r}")
        if name in cluster_names:
            raise MembershipError(f"{key}.name: {name!r} is a cluster name")
        if name in names:
            raise MembershipError(f"{key}.name: duplicate name {name!r}")
        if (host, port) in addrs:
            raise MembershipError(f"{key}.address: duplicate address {format_address(host, port)!r}")
        names.add(name)
        addrs.add((host, port))
        out.append(NodeConfig(name=name, host=host, port=port, weight=weight))
    return out


class Membership:
    """Owns the node lists: the configured ones, and `nodes`, every live node of every cluster (the health
    checker, the sweeper and the metrics read it; only this class changes it)."""

    def __init__(self, clusters: list[Cluster], routing: "Routing", health: HealthChecker, outlier: OutlierDetector,
                 new_pool: Callable[[Node], "Pool"], dns_clusters: set[str], healthy_threshold: int,
                 state: Callable[[], dict[str, Any]]) -> None:
        self.clusters = clusters
        self.routing = routing
        self.health = health
        self.outlier = outlier
        self.new_pool = new_pool       # a connection pool for a node added at run time
        self.healthy_threshold = healthy_threshold   # health_check.healthy_threshold
        self.state = state             # the applied shared state (drains apply to discovered nodes too)
        self.nodes: list[Node] = [n for c in clusters for n in c.nodes]
        self.configured = {c.name: [spec_of(n) for n in c.nodes] for c in clusters}
        self.dns = dns_clusters        # canary/discovery/dns_discovery.py owns these clusters' lists
        self._bad: dict[str, str] = {}     # last error per cluster, logged once instead of every reload

    def specs(self, state: dict[str, Any], cluster: str) -> tuple[str, list[dict[str, Any]]]:
        """(source, node list) a state document declares for a cluster: "state", "config" or "dns"."""
        if cluster in self.dns:
            return "dns", [spec_of(n) for n in self.routing.clusters[cluster].nodes]
        nodes = state.get("nodes")
        if isinstance(nodes, dict) and cluster in nodes:
            return "state", nodes[cluster]
        return "config", self.configured[cluster]

    def names_elsewhere(self, state: dict[str, Any], cluster: str) -> dict[str, str]:
        """Node name -> cluster for every other cluster: node names are unique across clusters, because
        drains and ops verbs address a node by its bare name."""
        out = {}
        for c in self.clusters:
            if c.name != cluster:
                _, specs = self.specs(state, c.name)
                for s in specs if isinstance(specs, list) else ():
                    if isinstance(s, dict) and isinstance(s.get("name"), str):
                        out[s["name"]] = c.name
        return out

    def reconcile(self, state: dict[str, Any]) -> None:
        """Make every cluster's live nodes match the document. Never raises on bad data: a cluster whose
        list is invalid (a hand-edited file) keeps its current nodes and the problem is logged."""
        changed = False
        names = [c.name for c in self.clusters]
        for c in self.clusters:
            if c.name in self.dns:
                continue
            _, raw = self.specs(state, c.name)
            try:
                wanted = parse_nodes(raw, c.name, names)
            except MembershipError as e:
                if self._bad.get(c.name) != str(e):
                    self._bad[c.name] = str(e)
                    log.error("state: invalid node list for cluster %s (%s); keeping its current nodes", c.name, e)
                continue
            self._bad.pop(c.name, None)
            changed |= self._reconcile_cluster(c, wanted)
        if changed:
            self._list_nodes()

    def apply_discovered(self, c: Cluster, wanted: list[NodeConfig]) -> None:
        """A DNS answer for cluster `c` (canary/discovery/dns_discovery.py): the same reconcile, applied locally."""
        if self._reconcile_cluster(c, wanted):
            self._list_nodes()
            # Drains are by label, so they apply to discovered nodes too; this also recomputes `usable`.
            self.routing.apply_state(self.state(), time.monotonic())

    def _list_nodes(self) -> None:
        self.nodes = [n for c in self.clusters for n in c.nodes]

    def _reconcile_cluster(self, c: Cluster, wanted: list[NodeConfig]) -> bool:
        current = {n.name: n for n in c.nodes}
        if [(w.name, w.host, w.port, w.weight) for w in wanted] == \
                [(n.name, n.host, n.port, n.weight) for n in c.nodes]:
            return False
        keep: list[Node] = []
        for w in wanted:
            n = current.get(w.name)
            if n is not None and (n.host, n.port) == (w.host, w.port):
                n.weight = w.weight          # same name and address: health, ejections, counters are kept
                keep.append(n)
            else:
                keep.append(self._new_node(w, c))
        kept = set(keep)
        for n in c.nodes:
            if n not in kept:
                self._retire(n)
        for n in keep:
            n.current_weight = 0                         # restart smooth round robin over the new set
        c.nodes = keep   # `usable` is recomputed by Routing.apply_state, which the process runs next
        log.info("cluster %s nodes: %s", c.name, ", ".join(f"{n.name}={n.host}:{n.port}" for n in keep))
        return True

    def _new_node(self, cfg: NodeConfig, c: Cluster) -> Node:
        n = Node(cfg, c)
        n.pool = self.new_pool(n)
        if self.health.started:
            # Added while serving: no traffic until the router itself has seen the node answer /readyz.
            # hc_ok = healthy_threshold - 1 makes the very first good check enough (the registrar already waited for
            # /readyz, so `healthy_threshold` checks would only add delay); a node that fails a check first needs
            # `healthy_threshold` good checks in a row like any unhealthy node.
            n.hc_healthy = False
            n.hc_ok = self.healthy_threshold - 1
            self.health.add(n)
        # else: applied at startup, before the health checker runs: optimistic like configured nodes
        return n

    def _retire(self, n: Node) -> None:
        """No new requests (it is gone from the cluster); in-flight ones finish on their connections, which
        are closed instead of pooled (max_idle 0); idle ones are closed now."""
        n.removed = True
        self.health.remove(n)
        self.outlier.forget(n.cluster.name, n.name)
        if n.pool is not None:
            n.pool.max_idle = 0
            n.pool.close_all()
