"""App: wires config, clusters, routing, health checks, state store, listeners and the periodic sweeper."""
from __future__ import annotations

import asyncio
import copy
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from typing import Any, Callable

from pathlib import Path

from . import plan, secret
from .access_log import AccessLog
from .admin import Admin
from .alert_outbox import RedisOutbox
from .alert_pipelines import from_environment as alert_pipelines
from .alerting import Alerting, Watch
from .automation import Automation
from .cluster import Cluster
from .config import Config
from .health_check import HealthChecker
from .lease import FileLease, RedisLease
from .limits import ConcurrencyLimit
from .dns_discovery import DnsDiscovery
from .guard import ClientConnections, ProxyTrust
from .membership import Membership, format_address
from .outlier_detection import OutlierDetector
from .pin import PinSigner
from .proxy import FrontConn
from .retry_budget import RetryBudget
from .routing import Routing
from .state import FileStore, RedisStore, initial_state
from .upstream_pool import Pool

log = logging.getLogger("canary")
SWEEP_INTERVAL = 0.1


class App:
    """Everything of one router process; all mutation happens on its single event loop."""

    def __init__(self, cfg: Config, admin_token: str, pin_secret: str, worker: int = 0,
                 pin_fallbacks: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.worker = worker
        self.clusters = [Cluster(c, cfg.balancing) for c in cfg.clusters]
        self.routing = Routing(self.clusters, cfg.share.slow_start_window, cfg.share.slow_start_min_percent)
        self.routing.set_percent(cfg.share.initial_percent)
        self.pin = PinSigner(pin_secret, cfg.pin.cookie_name, cfg.pin.ttl, cfg.pin.secure, pin_fallbacks)
        self.outlier = OutlierDetector(cfg.outlier_detection, self._changed)
        self.retry_budget = RetryBudget(cfg.retry.budget_percent, cfg.retry.min_concurrent)
        self.retry_waiters: deque[Any] = deque()
        self.limits = {c.name: ConcurrencyLimit(c.max_concurrent, c.max_queue) for c in cfg.clusters}
        self.nodes = [n for c in self.clusters for n in c.nodes]
        self.health = HealthChecker(cfg.health_check, self.nodes, self._changed)
        self.membership = Membership(self)
        self.discovery = DnsDiscovery(self)
        self.access_log = AccessLog() if cfg.access_log else None
        self.fronts: set[FrontConn] = set()
        self.local_counts: dict[int, int] = {}
        self.bad_requests = 0
        self.retries_total = 0
        self.proxy_trust = ProxyTrust(cfg.trusted_proxies)
        self.client_conns = ClientConnections(cfg.limits.max_connections_per_client)
        self.router_path_answers = 0
        # a body up to this size is kept for a resend on retry (every buffered body fits)
        self.replay_max = max(64 * 1024, cfg.limits.buffer_body_bytes)
        self.wall_now = time.time()
        self.state: dict[str, Any] = initial_state(self.clusters[0].name, self.clusters[1].name,
                                                   cfg.share.initial_percent)
        self.store: FileStore | RedisStore = (RedisStore(cfg.redis) if cfg.redis else FileStore(cfg.state_file))
        self.admin = Admin(self, admin_token, cfg.pin.secure) if admin_token else None
        self.alerting: Alerting | None = None   # started with the admin listener: one per router, not per worker
        self.automation: Automation | None = None   # likewise: plans and proactive shifts, under a lease
        self.servers: list[asyncio.AbstractServer] = []
        self._stop = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- state ---------------------------------------------------------------------------------------------
    def _changed(self) -> None:
        self.routing.refresh(time.monotonic())

    def apply_state(self, state: dict[str, Any]) -> None:
        if state.get("version", 0) < self.state.get("version", 0) and state.get("updated_at", 0) < \
                self.state.get("updated_at", 0):
            return  # stale
        self.membership.reconcile(state)   # first: drains and availability below must see the new nodes
        self.state = state
        self.routing.apply_state(state, time.monotonic())

    async def change(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Mutate the shared state (re-read first so concurrent instances do not undo each other)."""
        try:
            fresh = await self.store.load()
        except Exception:
            fresh = None
        new = copy.deepcopy(fresh if fresh is not None else self.state)
        fn(new)
        new["version"] = int(new.get("version", 0)) + 1
        new["updated_at"] = time.time()
        await self.store.save(new)
        self.apply_state(new)

    def resolve_target(self, target: str) -> str | None:
        """Cluster name, node name, cluster/node or node HOST:PORT -> the label stored in `drained`.

        An explicit CLUSTER/NODE label is accepted for a node that is not (yet) a member, so a node can
        be drained before it is added (the label applies as soon as a node of that name joins)."""
        for c in self.clusters:
            if target == c.name:
                return c.name
        for c in self.clusters:
            n = c.find(target)
            if n is not None:
                return n.label
        cname, sep, nname = target.partition("/")
        if sep and cname in self.routing.clusters and nname and nname not in self.routing.clusters \
                and all(ch.isalnum() or ch in "-_." for ch in nname):
            return target
        return None

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        r = self.routing
        return {
            "stable": r.stable.name, "canary": r.canary.name, "percent": r.percent,
            "effective_canary_percent": round(r.effective_percent(now), 2), "panic": r.panic,
            "drained": sorted(self.state.get("drained", [])), "version": self.state.get("version", 0),
            "pid": os.getpid(), "worker": self.worker,
            "plan": plan.progress(self.state, time.time()), "shift": dict(r.shift),
            "automation_leader": self.automation.leader if self.automation is not None else None,
            "clusters": {c.name: {
                "role": "canary" if c is r.canary else "stable", "available": c.available,
                "drained": c.drained, "slow_start_factor": round(r.slow[c.name].factor(now), 3),
                "active": self.limits[c.name].active, "queued": len(self.limits[c.name].queue),
                "nodes": [{"name": n.name, "address": format_address(n.host, n.port), "weight": n.weight,
                           "state": n.state(now), "outstanding": n.outstanding, "ejections": n.ejections,
                           # the health checks' verdict alone, also while drained (rolling restarts wait on it)
                           "health": "healthy" if n.hc_healthy and not n.down_until_healthy else "unhealthy",
                           "requests": sum(n.status_counts)} for n in c.nodes],
            } for c in self.clusters},
        }

    def alert_snapshot(self) -> dict[str, Any]:
        """What alerting.Watch compares between two looks: node states, cluster availability, panic, roles."""
        now = time.monotonic()
        r = self.routing
        return {"nodes": {n.label: n.state(now) for n in self.nodes}, "clusters": {c.name: c.available for c in self.clusters},
                "panic": r.panic, "stable": r.stable.name, "canary": r.canary.name}

    def new_lease(self) -> FileLease | RedisLease:
        """Who drives plans and shifts: a Redis key beside the state, or a flock beside the state file."""
        if isinstance(self.store, RedisStore):
            owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
            return RedisLease(self.store.redis, self.store.key + ":automation-lease", owner)
        return FileLease(self.cfg.state_file + ".lease")

    def new_pool(self, node: Any) -> Pool:
        lim = self.cfg.limits
        assert self.loop is not None
        return Pool(node, self.loop, self.cfg.timeouts.connect, max_head=lim.max_response_header_bytes,
                    max_headers=lim.max_response_headers)

    def release_retry(self) -> None:
        self.retry_budget.release()
        while self.retry_waiters:
            ex = self.retry_waiters.popleft()
            if ex.done or not ex.waiting_retry:
                continue
            if self.retry_budget.try_acquire():
                ex.resume_retry()
            else:
                self.retry_waiters.appendleft(ex)
            break

    # -- periodic work -------------------------------------------------------------------------------------
    async def sweeper(self) -> None:
        """Timeouts (header read, idle, upstream, queue), ejection expiry, pool trimming, log flush."""
        idle_age = self.cfg.timeouts.upstream_idle
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                now = time.monotonic()
                self.wall_now = time.time()
                for f in list(self.fronts):
                    tx = f.tx
                    if tx is not None:
                        if not tx.done and tx.deadline <= now:
                            tx.timeout()
                    elif f.deadline and f.deadline <= now:
                        f.close()
                for lim in self.limits.values():
                    for ex in lim.expire(now):
                        ex.queued = False
                        ex.limit = None
                        ex.fail_local(503, "queue_timeout")
                for n in self.nodes:
                    n.pool.close_idle(now - idle_age)
                self.routing.refresh(now)
                if self.access_log is not None:
                    self.access_log.tick(self.wall_now)
                    self.access_log.flush()
            except Exception:
                log.exception("sweeper error")

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def start(self, reuse_port: bool = False, run_admin: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        for n in self.nodes:
            n.pool = self.new_pool(n)
        try:
            if isinstance(self.store, RedisStore):
                st = await self.store.init(self.state)
            else:
                st = await self.store.load()
                if st is None:
                    await self.store.save(self.state)
                    st = self.state
        except Exception as e:
            log.error("cannot load shared state (%s); using configured defaults until it is reachable", e)
            st = self.state
        self.apply_state(st)
        for cluster, (dns_host, dns_port), _ in self.discovery.clusters():
            await self.discovery.refresh(cluster, dns_host, dns_port)   # nodes before the first request
        self.store.watch(self.apply_state, lambda: self.state)
        self.health.start()
        self.discovery.start()
        loop.create_task(self.sweeper())
        host, port = self.cfg.listen
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(4096)
        sock.setblocking(False)
        self.servers.append(await loop.create_server(lambda: FrontConn(self), sock=sock, backlog=4096))
        if run_admin and self.admin is not None:
            await self.admin.start(*self.cfg.admin, reuse_port=False)
        if run_admin:
            folder = Path(secret.var_path("alerts"))
            outbox = RedisOutbox(self.cfg.redis, self.store.key + ":alert-outbox", folder) \
                if isinstance(self.store, RedisStore) and self.cfg.redis else None
            self.alerting = Alerting(folder, alert_pipelines(), outbox=outbox)
            self.alerting.start(Watch(self.alert_snapshot, self.alerting))
            self.automation = Automation(self.change, lambda: self.state, self.routing.clusters, self.cfg.analysis,
                                         self.cfg.proactive_shift, self.cfg.slo, self.new_lease(), self.alerting.emit)
            self.automation.start()
        # Long-lived objects (modules, config, clusters) go to the permanent generation so full collections
        # stay short; the hot path creates few cycles, so a larger gen0 threshold only trims GC pauses.
        gc.collect()
        gc.freeze()
        gc.set_threshold(7000, 20, 20)

    async def run(self, reuse_port: bool = False, run_admin: bool = True) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.start(reuse_port, run_admin)
        print(f"canary: worker {self.worker} pid {os.getpid()} listening on {self.cfg.listen[0]}:"
              f"{self.cfg.listen[1]}" + (f", admin on {self.cfg.admin[0]}:{self.cfg.admin[1]}" if run_admin else ""),
              file=sys.stderr, flush=True)
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        for s in self.servers:
            s.close()
        if self.admin is not None:
            self.admin.close()
        if self.alerting is not None:
            self.alerting.stop()
        if self.automation is not None:
            self.automation.stop()
        self.health.stop()
        self.discovery.stop()
        for n in self.nodes:
            if n.pool is not None:
                n.pool.close_all()
        if self.access_log is not None:
            self.access_log.flush()
        await self.store.close()
