"""What ops see of a router: the status document (/api/status, `canary status`), the alert watch's snapshot,
and the names an operator may use for a cluster or node. Read-only functions over the routing and state."""
from __future__ import annotations

import os
import time
from typing import Any

from canary.automation import plan
from canary.dataplane.mirror import Mirror
from canary.dataplane.routing import Routing
from canary.discovery.membership import format_address


def status(routing: Routing, state: dict[str, Any], worker: int, automation_leader: bool | None,
           mirror: Mirror) -> dict[str, Any]:
    now = time.monotonic()
    r = routing
    return {
        "stable": r.stable.name, "canary": r.canary.name, "percent": r.percent,
        "effective_canary_percent": round(r.effective_percent(now), 2), "panic": r.panic,
        "drained": sorted(state.get("drained", [])), "version": state.get("version", 0),
        "pid": os.getpid(), "worker": worker,
        "plan": plan.progress(state, time.time()), "shift": dict(r.shift),
        "automation_leader": automation_leader,
        "mirror": mirror_status(mirror),
        "clusters": {c.name: {
            "role": "canary" if c is r.canary else "stable", "available": c.available,
            "drained": c.drained, "slow_start_factor": round(r.slow[c.name].factor(now), 3),
            "active": c.limit.active, "queued": len(c.limit.queue),
            "nodes": [{"name": n.name, "address": format_address(n.host, n.port), "weight": n.weight,
                       "state": n.state(now), "outstanding": n.outstanding, "ejections": n.ejections,
                       # the health checks' verdict alone, also while drained (rolling restarts wait on it)
                       "health": "healthy" if n.hc_healthy and not n.down_until_healthy else "unhealthy",
                       "requests": sum(n.status_counts)} for n in c.nodes],
        } for c in r.clusters.values()},
    }


def mirror_status(mirror: Mirror) -> dict[str, Any] | None:
    """Shadow traffic in force (None: none) with this process's counts of copies."""
    if not mirror.on or mirror.target is None:
        return None
    return {"cluster": mirror.target.name, "percent": mirror.percent, "copied": mirror.copied,
            "answered": mirror.answered, "failed": mirror.failed, "in_flight": len(mirror.in_flight),
            "dropped": dict(mirror.dropped)}


def alert_snapshot(routing: Routing) -> dict[str, Any]:
    """What alerting.Watch compares between two looks: node states, cluster availability, panic, roles."""
    now = time.monotonic()
    r = routing
    clusters = r.clusters.values()
    return {"nodes": {n.label: n.state(now) for c in clusters for n in c.nodes},
            "clusters": {c.name: c.available for c in clusters},
            "panic": r.panic, "stable": r.stable.name, "canary": r.canary.name}


def resolve_target(routing: Routing, target: str) -> str | None:
    """Cluster name, node name, cluster/node or node HOST:PORT -> the label stored in `drained`.

    An explicit CLUSTER/NODE label is accepted for a node that is not (yet) a member, so a node can
    be drained before it is added (the label applies as soon as a node of that name joins)."""
    clusters = routing.clusters
    if target in clusters:
        return target
    for c in clusters.values():
        n = c.find(target)
        if n is not None:
            return n.label
    cname, sep, nname = target.partition("/")
    if sep and cname in clusters and nname and nname not in clusters \
            and all(ch.isalnum() or ch in "-_." for ch in nname):
        return target
    return None
