"""RequestContext: what per-request code (downstream connections, exchanges) uses, and nothing else.

The router process (canary/cli/router_process.py) builds one and hands it to every downstream connection. Per-request code
never sees the process object: it reads settings and components from here and bumps the counters here, which
the metrics read at scrape time. Everything runs on one event loop, so plain attributes need no locks."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from canary.config.settings import Config, LimitsConfig, TimeoutConfig
from canary.dataplane.client_connections import ClientConnections
from canary.dataplane.mirror import Mirror
from canary.dataplane.outlier_detection import OutlierDetector
from canary.dataplane.pin import PinSigner
from canary.dataplane.retry_budget import RetryBudget
from canary.dataplane.routing import Routing
from canary.dataplane.testers import TesterLinks
from canary.dataplane.trusted_proxies import ProxyTrust

if TYPE_CHECKING:
    from canary.dataplane.access_log import AccessLog
    from canary.dataplane.downstream_io import DownstreamIO


class Counters:
    """Router-wide counters of requests that no node answered (per-node ones live on the Node)."""

    __slots__ = ("bad_requests", "retries", "router_path_answers", "local_statuses")

    def __init__(self) -> None:
        self.bad_requests = 0          # refused by the strict parser (4xx, connection closed)
        self.retries = 0               # attempts beyond the first, on another node or cluster
        self.router_path_answers = 0   # /healthz, /readyz, /metrics on the front port
        self.local_statuses: dict[int, int] = {}   # status -> responses the router generated itself

    def local_response(self, status: int) -> None:
        self.local_statuses[status] = self.local_statuses.get(status, 0) + 1


class RequestContext:
    """Settings, components and counters of one router process, as per-request code needs them."""

    __slots__ = ("timeouts", "limits", "max_attempts", "trusted_hops", "replay_max", "routing", "pin", "outlier",
                 "retry_budget", "proxy_trust", "client_conns", "access_log", "downstreams", "counters",
                 "wall_now", "loop", "testers", "mirror")

    def __init__(self, cfg: Config, routing: Routing, pin: PinSigner, outlier: OutlierDetector,
                 retry_budget: RetryBudget, access_log: "AccessLog | None", wall_now: float) -> None:
        self.timeouts: TimeoutConfig = cfg.timeouts
        self.limits: LimitsConfig = cfg.limits
        self.max_attempts = cfg.retry.max_attempts
        self.trusted_hops = cfg.trusted_hops
        # a body up to this size is kept for a resend on retry (every buffered body fits)
        self.replay_max = max(64 * 1024, cfg.limits.buffer_body_bytes)
        self.routing = routing
        self.pin = pin
        self.testers = TesterLinks(pin, [c.name for c in routing.order])
        self.mirror = Mirror(cfg.mirror)
        self.outlier = outlier
        self.retry_budget = retry_budget
        self.proxy_trust = ProxyTrust(cfg.trusted_proxies)
        self.client_conns = ClientConnections(cfg.limits.max_connections_per_client)
        self.access_log = access_log
        self.downstreams: set[DownstreamIO] = set()   # open client connections (the sweeper times them out)
        self.counters = Counters()
        self.wall_now = wall_now       # time.time(), refreshed by the sweeper: pins are dated to the second
        self.loop: asyncio.AbstractEventLoop | None = None   # set when the process starts
