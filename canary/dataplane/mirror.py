"""Shadow traffic: a share of safe requests copied to a cluster, the copies' answers discarded and recorded.

`canary mirror CLUSTER PERCENT` (or a plan's mirror step) puts `{"cluster", "percent"}` in the shared state
under `mirror`. From then on that share of the requests that are safe to repeat (by default GET and HEAD
without cookies or Authorization, to the discovery document, the JWKS and the login page: `[mirror]`)
and that went to the *other* cluster is sent once more, to a node of CLUSTER, after the original was
dispatched. The copy's answer is read and dropped; its status and latency go into the cluster's shadow
records, and the original's into its own cluster's, so a plan can judge the canary against stable on the
same requests before a single user goes there (automation/loop.py).

A copy never delays or changes the real answer: it starts on a later turn of the loop, holds no slot of
the cluster's concurrency limit and no retry budget, is never retried and never ejects a node. Copies go
first when there is pressure: none is made while the target cluster's limit is nearly taken (its active
requests and the copies in flight reach `max_concurrent`, or anyone waits in its queue), while this router
has `max_router_requests` client requests in flight, or while `max_in_flight` copies are unanswered;
each drop is counted by reason (canary_mirror_dropped_total).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, Protocol

from canary.config.settings import MirrorConfig

if TYPE_CHECKING:
    from canary.dataplane.cluster import Cluster, Node
    from canary.dataplane.upstream_pool import UpstreamConn

_now: Final = time.monotonic
SHADOW_HEADER: Final = b"X-Canary-Shadow: 1\r\n"   # a node can tell a copy (and leave it out of its own counts)
DROP_REASONS: Final = ("cluster_limit", "router_load", "in_flight", "no_node")


class Shadowed(Protocol):
    """The original request (exchange.py's Exchange), as far as copying it goes."""

    cluster: "Cluster | None"
    head: bytes
    done: bool
    shadowed: bool


class _NoClient:
    """A copy has no client: flow-control hints from its node connection have nobody to pause."""

    __slots__ = ()

    def pause_reading_for_upstream(self) -> None:
        pass

    def resume_reading_for_upstream(self) -> None:
        pass


_NO_CLIENT: Final = _NoClient()


class Mirror:
    """The mirroring now in force (from the shared state) and the copies in flight; one per router process."""

    __slots__ = ("cfg", "on", "target", "percent", "credit", "methods", "paths", "firsts", "in_flight", "copied",
                 "dropped", "answered", "failed")

    def __init__(self, cfg: MirrorConfig) -> None:
        self.cfg = cfg
        self.on = False                    # read per request: the only cost while nothing is mirrored
        self.target: Cluster | None = None
        self.percent = 0.0
        self.credit = 0.0                  # exact share: every request adds `percent`, a copy costs 100
        self.methods = frozenset(m.encode() for m in cfg.methods)
        self.paths = frozenset(p.encode() for p in cfg.paths)
        self.firsts = frozenset(p[1:2] for p in self.paths)
        self.in_flight: set[Copy] = set()
        self.copied = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.answered = 0
        self.failed = 0

    def apply(self, state: dict[str, Any], clusters: dict[str, "Cluster"]) -> None:
        """The shared state's `mirror` ({"cluster", "percent"}); anything else turns mirroring off."""
        m = state.get("mirror")
        name = m.get("cluster") if isinstance(m, dict) else None
        percent = m.get("percent") if isinstance(m, dict) else None
        cluster = clusters.get(name) if isinstance(name, str) else None
        ok = cluster is not None and isinstance(percent, (int, float)) and not isinstance(percent, bool)
        self.percent = max(0.0, min(100.0, float(percent))) if ok and percent is not None else 0.0
        self.target = cluster if ok else None
        self.on = self.target is not None and self.percent > 0

    def eligible(self, method: bytes, url: bytes, cookies: list[bytes], headers: list[bytes]) -> bool:
        """Safe to repeat: an allowed method and path, no cookie, no Authorization (nothing that is a user's).

        Cheapest first: most requests fail on their cookie, or on the first byte of their path (a one-byte
        slice is a cached object; bytes.find and split parse their arguments, ~400 instructions a call)."""
        if cookies or url[1:2] not in self.firsts or method not in self.methods:
            return False
        if url.partition(b"?")[0] not in self.paths:
            return False
        for h in headers:
            if h[:14].lower() == b"authorization:":
                return False
        return True

    def sample(self) -> bool:
        """Whether this request is copied: exactly `percent` of those asked about, spread evenly."""
        self.credit += self.percent
        if self.credit < 100.0:
            return False
        self.credit -= 100.0
        return True

    def copy(self, ex: Shadowed, router_requests: int) -> None:
        """On the loop turn after an eligible request was dispatched: a copy to the target cluster for `percent`
        of those the other cluster answers, unless there is pressure. A request the target answers itself,
        one not started yet (pipelined behind another) or one already answered is not sampled."""
        target = self.target
        origin = ex.cluster
        if target is None or origin is None or origin is target or ex.done or not self.sample():
            return
        limit = target.limit
        if limit.queue or limit.active + len(self.in_flight) >= limit.max_active:
            self.dropped["cluster_limit"] += 1
            return
        if router_requests >= self.cfg.max_router_requests:
            self.dropped["router_load"] += 1
            return
        if len(self.in_flight) >= self.cfg.max_in_flight:
            self.dropped["in_flight"] += 1
            return
        now = _now()
        node = target.pick(now)
        if node is None or node.pool is None:
            self.dropped["no_node"] += 1
            return
        self.copied += 1
        ex.shadowed = True           # its own answer is recorded beside the copy's (Exchange.finish)
        c = Copy(self, node, ex.head[:-2] + SHADOW_HEADER + b"\r\n", now, now + self.cfg.timeout)
        self.in_flight.add(c)
        conn = node.pool.get()
        if conn is not None:
            c.attach(conn)
        else:
            node.pool.connect(c)

    def sweep(self, now: float) -> None:
        """The sweeper's turn: copies past their timeout are cut and counted failed."""
        if self.in_flight:
            for c in [c for c in self.in_flight if c.deadline <= now]:
                c.fail()

    def ended(self, c: "Copy", ok: bool, now: float) -> None:
        self.in_flight.discard(c)
        if ok:
            self.answered += 1
        else:
            self.failed += 1
        c.node.cluster.shadow_records.answered(now, now - c.t0, ok and c.status < 500)


class Copy:
    """One copy on a node of the mirror target: the exchange interface a node connection calls back, with
    the answer read and thrown away (upstream_pool.py)."""

    __slots__ = ("mirror", "node", "head", "t0", "deadline", "up", "status", "resp_started", "resp_eof_body",
                 "resp_bytes", "head_only", "front", "done", "retried")

    def __init__(self, mirror: Mirror, node: "Node", head: bytes, now: float, deadline: float) -> None:
        self.mirror = mirror
        self.node = node
        self.head = head
        self.t0 = now
        self.deadline = deadline
        self.up: UpstreamConn | None = None
        self.status = 0
        self.resp_started = False
        self.resp_eof_body = False
        self.resp_bytes = 0
        self.head_only = head.startswith(b"HEAD ")
        self.front = _NO_CLIENT
        self.done = False
        self.retried = False
        node.outstanding += 1          # the balancer sees the copy's load on the node

    def attach(self, conn: "UpstreamConn", now: float = 0.0) -> None:
        if self.done:
            conn.pool.release(conn, now or _now())
            return
        self.up = conn
        conn.send(self, self.head)

    def connect_failed(self, node: "Node", reason: str) -> None:
        self._end(False)

    def on_response_head(self, conn: "UpstreamConn", status: int) -> None:
        self.resp_started = True
        self.status = status
        self.resp_eof_body = conn.cl is None and not conn.te

    def on_response_body(self, data: bytes) -> None:
        self.resp_bytes += len(data)

    def on_response_complete(self, conn: "UpstreamConn", reusable: bool) -> None:
        self.up = None
        now = _now()
        if reusable and not self.resp_eof_body:
            conn.pool.release(conn, now)
        else:
            conn.close()
        self._end(True, now)

    def upstream_error(self, conn: "UpstreamConn", kind: str) -> None:
        self.up = None
        if kind == "reset" and conn.reused and not conn.got_bytes and not self.retried and not self.done:
            # a pooled connection the node had closed (a restart): not the node's answer, sent again once on
            # a new connection, as an exchange would replay it
            self.retried = True
            pool = self.node.pool
            if pool is not None:
                pool.connect(self)
                return
        self._end(False)

    def fail(self) -> None:
        """Timed out: the connection is closed (never pooled with an answer still coming)."""
        up = self.up
        if up is not None:
            self.up = None
            up.close()
        self._end(False)

    def _end(self, ok: bool, now: float = 0.0) -> None:
        if self.done:
            return
        self.done = True
        self.node.outstanding -= 1
        self.mirror.ended(self, ok, now or _now())
