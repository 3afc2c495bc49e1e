"""The router process: builds config, clusters, routing, health checks, state store, listeners and the sweeper."""
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
from pathlib import Path
from typing import Any, Callable

from canary.admin import metrics, ops_view
from canary.admin.api import Admin
from canary.alerts.alerting import Alerting, Watch
from canary.alerts.outbox import RedisOutbox
from canary.alerts.settings import from_environment as alert_pipelines
from canary.automation.lease import FileLease, RedisLease
from canary.automation.loop import Automation
from canary.config import secret
from canary.config.settings import Config
from canary.dataplane.access_log import AccessLog
from canary.dataplane.cluster import Cluster, Node
from canary.dataplane.downstream import DownstreamConn
from canary.dataplane.outlier_detection import OutlierDetector
from canary.dataplane.pin import PinSigner
from canary.dataplane.request_context import RequestContext
from canary.dataplane.retry_budget import RetryBudget
from canary.dataplane.routing import Routing
from canary.dataplane.testers import TesterLinks
from canary.dataplane.upstream_pool import Pool
from canary.discovery.dns_discovery import DnsDiscovery
from canary.discovery.health_check import HealthChecker
from canary.discovery.membership import Membership
from canary.discovery.state import FileStore, RedisStore, initial_state

log = logging.getLogger("canary")
SWEEP_INTERVAL = 0.1


class RouterProcess:
    """One router process: it builds the components and wires them; none of them holds a reference back.

    Per-request code gets a RequestContext; membership owns the node lists; the admin listener and the
    metrics read through the narrow methods below. All mutation happens on the single event loop."""

    def __init__(self, cfg: Config, admin_token: str, pin_secret: str, worker: int = 0,
                 pin_fallbacks: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.worker = worker
        self.clusters = [Cluster(c, cfg.balancing) for c in cfg.clusters]
        self.routing = Routing(self.clusters, cfg.share.slow_start_window, cfg.share.slow_start_min_percent)
        self.routing.set_percent(cfg.share.initial_percent)
        pin = PinSigner(pin_secret, cfg.pin.cookie_name, cfg.pin.ttl, cfg.pin.secure, pin_fallbacks, cfg.pin.mac)
        self.outlier = OutlierDetector(cfg.outlier_detection, self._changed)
        self.ctx = RequestContext(cfg, self.routing, pin, self.outlier,
                                  RetryBudget(cfg.retry.budget_percent, cfg.retry.min_concurrent),
                                  AccessLog() if cfg.access_log else None, time.time())
        self.health = HealthChecker(cfg.health_check, self._changed)
        self.state: dict[str, Any] = initial_state(self.clusters[0].name, self.clusters[1].name,
                                                   cfg.share.initial_percent)
        self.membership = Membership(self.clusters, self.routing, self.health, self.outlier, self.new_pool,
                                     {c.name for c in cfg.clusters if c.dns is not None}, cfg.health_check.healthy_threshold,
                                     lambda: self.state)
        self.discovery = DnsDiscovery(cfg.clusters, self.membership)
        self.store: FileStore | RedisStore = (RedisStore(cfg.redis) if cfg.redis else FileStore(cfg.state_file))
        self.admin = Admin(self, admin_token, cfg.pin.secure) if admin_token else None
        self.alerting: Alerting | None = None   # started with the admin listener: one per router, not per worker
        self.automation: Automation | None = None   # likewise: plans and proactive shifts, under a lease
        self.servers: list[asyncio.AbstractServer] = []
        self._stop = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def testers(self) -> TesterLinks:
        """The live tester links as the request path sees them (the admin API makes their URLs)."""
        return self.ctx.testers

    @property
    def public_origin(self) -> str:
        """Where clients reach this router (tester links point there): `public_origin`, else the listen address."""
        if self.cfg.public_origin:
            return self.cfg.public_origin
        host, port = self.cfg.listen
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def nodes(self) -> list[Node]:
        """Every live node of every cluster (membership's list)."""
        return self.membership.nodes

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
        self.ctx.testers.apply(state, time.time())
        self.ctx.mirror.apply(state, self.routing.clusters)

    async def change(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Mutate the shared state: read, change and write as one step of the store (state.py's update), so
        concurrent instances (an opening and a revoke, an operator and the plan's driver) never undo each other."""
        def build(fresh: dict[str, Any] | None) -> dict[str, Any]:
            new = copy.deepcopy(fresh if fresh is not None else self.state)
            fn(new)
            new["version"] = int(new.get("version", 0)) + 1
            new["updated_at"] = time.time()
            return new
        self.apply_state(await self.store.update(build))

    def claim_tester_link(self, link: str, then: Callable[[bool], None]) -> None:
        """A tester link's first opening (testers.py): claimed once across every router and worker, then
        marked opened in the shared state; `then(first)` runs on the loop when that is settled."""
        assert self.loop is not None, "links are opened once the process has started"

        opened: list[bool] = []

        def mark(s: dict[str, Any]) -> None:
            entry = (s.get("testers") or {}).get(link)
            fresh = isinstance(entry, dict) and not entry.get("opened_at")
            if fresh:
                entry["opened_at"] = time.time()
            opened[:] = [True] if fresh else []     # the last run decides (it may run again)

        async def claim() -> bool:
            async with asyncio.timeout(5):      # a slow store: the tester gets 410 and a new link, never a hang
                if not await self.store.claim(f"tester-{link}"):
                    return False
                await self.change(mark)
            return bool(opened)

        def done(task: "asyncio.Task[bool]") -> None:
            failed = task.cancelled() or task.exception() is not None
            if failed and not task.cancelled():
                log.error("tester link: the shared state could not record its opening: %s", task.exception())
            then(not failed and task.result())
        self.loop.create_task(claim()).add_done_callback(done)

    # -- what the admin listener reads (admin.RouterControl) -----------------------------------------------
    def resolve_target(self, target: str) -> str | None:
        return ops_view.resolve_target(self.routing, target)

    @property
    def automation_leader(self) -> bool | None:
        """Whether this router drives plans and shifts (None: a worker without the automation loop)."""
        return self.automation.leader if self.automation is not None else None

    def status(self) -> dict[str, Any]:
        return ops_view.status(self.routing, self.state, self.worker, self.automation_leader, self.ctx.mirror)

    def metrics(self) -> bytes:
        return metrics.render(self.ctx, self.health, self.state, bool(self.automation_leader))

    def new_lease(self) -> FileLease | RedisLease:
        """Who drives plans and shifts: a Redis key beside the state, or a flock beside the state file."""
        if isinstance(self.store, RedisStore):
            owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
            return RedisLease(self.store.redis, self.store.key + ":automation-lease", owner)
        return FileLease(self.cfg.state_file + ".lease")

    def new_pool(self, node: Node) -> Pool:
        lim = self.cfg.limits
        assert self.loop is not None, "pools are made once the process has started"
        return Pool(node, self.loop, self.cfg.timeouts.connect, max_head=lim.max_response_header_bytes,
                    max_headers=lim.max_response_headers)

    # -- periodic work -------------------------------------------------------------------------------------
    async def sweeper(self) -> None:
        """Timeouts (header read, idle, upstream, queue), ejection expiry, pool trimming, log flush."""
        idle_age = self.cfg.timeouts.upstream_idle
        ctx = self.ctx
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                now = time.monotonic()
                ctx.wall_now = time.time()
                for f in list(ctx.downstreams):
                    f.sweep(now)
                for c in self.clusters:
                    for ex in c.limit.expire(now):
                        ex.queue_timed_out()
                for n in self.membership.nodes:
                    n.pool.close_idle(now - idle_age)
                self.routing.refresh(now)
                ctx.testers.expire(self.state, ctx.wall_now)
                ctx.mirror.sweep(now)
                if ctx.access_log is not None:
                    ctx.access_log.tick(ctx.wall_now)
                    ctx.access_log.flush()
            except Exception:
                log.exception("sweeper error")

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def start(self, reuse_port: bool = False, run_admin: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.ctx.loop = loop
        self.ctx.testers.claim = self.claim_tester_link
        for n in self.membership.nodes:
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
        self.health.start(self.membership.nodes)
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
        self.servers.append(await loop.create_server(lambda: DownstreamConn(self.ctx), sock=sock, backlog=4096))
        if run_admin and self.admin is not None:
            await self.admin.start(*self.cfg.admin, reuse_port=False)
        if run_admin:
            folder = Path(secret.var_path("alerts"))
            outbox = RedisOutbox(self.cfg.redis, self.store.key + ":alert-outbox", folder) \
                if isinstance(self.store, RedisStore) and self.cfg.redis else None
            self.alerting = Alerting(folder, alert_pipelines(), outbox=outbox)
            self.alerting.start(Watch(lambda: ops_view.alert_snapshot(self.routing), self.alerting))
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
        for n in self.membership.nodes:
            if n.pool is not None:
                n.pool.close_all()
        if self.ctx.access_log is not None:
            self.ctx.access_log.close()
        await self.store.close()
