"""Exchange: one client request and its attempts on nodes (streaming, retries, failover, accounting)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, cast

from canary.dataplane.limits import Admission
from canary.dataplane.local_reply import STATUS_LINES, local_response
from canary.dataplane.pin import BUCKETS
from canary.dataplane.request_body import RequestBody
from canary.dataplane.router_paths import TESTER_PATH

if TYPE_CHECKING:
    from canary.dataplane.cluster import Cluster, Node
    from canary.dataplane.downstream_io import DownstreamIO
    from canary.dataplane.limits import ConcurrencyLimit
    from canary.dataplane.request_context import RequestContext
    from canary.dataplane.upstream_pool import UpstreamConn

_now: Final = time.monotonic
RAW: Final = 0      # how the response body is relayed: as it comes,
CHUNK: Final = 1    # re-framed as chunked,
NOBODY: Final = 2   # or not at all (HEAD, 204, 304)


class Exchange(RequestBody):
    """One client request and its attempts on nodes: streaming both ways, retries, failover, accounting."""

    __slots__ = ("method", "url", "head", "node", "cluster", "attempts", "tried", "status", "t0", "bucket",
                 "cookie_line", "keep_alive", "head_only", "idempotent", "queued", "queue_deadline", "resp_mode",
                 "resp_eof_body", "retrying", "sent", "outcome", "limit", "waiting_retry", "resp_bytes", "resp_head",
                 "local", "shadowed")
    # set by DownstreamConn from the request head, before start()
    t0: float
    method: bytes
    url: bytes
    head: bytes
    keep_alive: bool
    head_only: bool
    idempotent: bool
    bucket: int

    def __init__(self, ctx: "RequestContext", front: "DownstreamIO") -> None:
        self.ctx = ctx
        self.front = front
        self.pending: list[bytes] = []
        self.body: list[bytes] | None = []
        self.body_size = 0
        self.body_done = False
        self.body_bytes = 0
        self.up = None
        self.node: Node | None = None
        self.cluster: Cluster | None = None
        self.attempts = 0
        self.tried: list[Node] = []
        self.resp_started = False
        self.status = 0
        self.cookie_line: bytes | None = None
        self.queued = False
        self.queue_deadline = 0.0
        self.done = False
        self.resp_mode = RAW
        self.resp_eof_body = False
        self.retrying = False
        self.sent = False
        self.outcome = ""
        self.limit: ConcurrencyLimit | None = None   # the cluster's, while queued for or holding a slot
        self.waiting_retry = False
        self.resp_bytes = 0
        self.resp_head: bytes | None = None
        # buffering: a small body is read whole before a node is chosen (request_body.py); awaiting_body (start()
        # was called while buffering) and body_end (its whole-body deadline) are set only for those requests
        self.buffering = False
        self.local: bytes | None = None   # a path the router answers itself (/healthz, /readyz, /metrics)
        self.shadowed = False             # copied to the mirror target (mirror.py): its answer is recorded too

    # -- admission and dispatch ----------------------------------------------------------------------------
    def start(self, now: float = 0.0) -> None:
        """Admission to the cluster routing chose; `now` when the caller has just read the clock."""
        if self.buffering:
            return self._await_body()
        ctx = self.ctx
        now = now or _now()
        self.deadline = now + ctx.timeouts.total      # the sweeper's bound, also on an answer of the router's own
        if self.local is not None:
            return self.answer_router_path(self.local)
        cluster = self.cluster = ctx.routing.choose(self.bucket, now)
        limit = self.limit = cluster.limit
        admission = limit.admit(self)
        if admission is Admission.ADMITTED:
            self.dispatch(cluster, now)
        elif admission is Admission.QUEUED:
            self.queued = True
            self.queue_deadline = now + ctx.limits.queue_timeout
        else:
            self.limit = None
            self.fail_local(503, "overload")

    def drop_unstarted(self) -> None:
        """A pipelined request that never started (its connection closed, or it was bad): no longer in flight."""
        self.done = True
        self.ctx.retry_budget.active -= 1

    def dispatch_queued(self) -> None:
        if not self.done:
            self.dispatch()

    def queue_timed_out(self) -> None:
        """The sweeper took it off its cluster's queue (ConcurrencyLimit.expire): it never held a slot."""
        self.queued = False
        self.limit = None
        self.fail_local(503, "queue_timeout")

    def answer_router_path(self, path: bytes) -> None:
        """/healthz: the router is alive; /readyz: it has a usable cluster; /metrics lives on the admin port;
        a tester link (testers.py)."""
        ctx = self.ctx
        ctx.counters.router_path_answers += 1
        if path.startswith(TESTER_PATH):
            ctx.testers.open(self, path, self.method, ctx.wall_now)
        elif path == b"/healthz":
            self.fail_local(200, "router_path", b"ok\n")
        elif path == b"/readyz":
            ready = not ctx.routing.panic
            self.fail_local(200 if ready else 503, "router_path", b"ready\n" if ready else b"no usable cluster\n")
        else:
            self.fail_local(404, "router_path")

    def dispatch(self, first: Cluster | None = None, now: float = 0.0) -> None:
        """Start an attempt: `first` is the cluster routing chose at admission (retries choose again)."""
        self.queued = False
        now = now or _now()
        node = self.ctx.routing.pick_node(self.bucket, now, self.tried, first)
        if node is None:
            return self.fail_local(503, "no_node")
        self.node = node
        self.cluster = node.cluster
        node.outstanding += 1
        self.tried.append(node)
        self.attempts += 1
        if self.expect and self.attempts == 1 and not self.body_bytes and not self.http10:
            self.front.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        pool = node.pool
        assert pool is not None, "a node takes requests once Membership gave it a pool"
        conn = pool.get()
        if conn is not None:
            self.attach(conn, now)
        else:
            pool.connect(self)

    def attach(self, conn: "UpstreamConn", now: float = 0.0) -> None:
        """A connection to the node (pooled, or just made): send the head and what body is here."""
        now = now or _now()
        if self.done:   # timed out or client left while connecting
            self._end_attempt(cast("Node", conn.pool.node))   # the pool's endpoint is always a Node
            conn.pool.release(conn, now)
            return
        self.up = conn
        self.sent = True
        self._arm(now)
        if self.front.write_paused:
            conn.pause()
        if self.pending:
            data = self.head + b"".join(self.pending)
            self.pending = []
        else:
            data = self.head
        conn.send(self, data)
        if self.front.paused_by_upstream_hint:
            self.front.resume_reading_for_upstream()

    def _arm(self, now: float = 0.0) -> None:   # node answer timer once the body is complete; till then body_idle
        t = self.ctx.timeouts
        self.deadline = min(self.t0 + t.total, (now or _now()) + (t.upstream if self.body_done else t.body_idle))

    # -- response from the node ------------------------------------------------------------------------------
    def on_response_head(self, conn: "UpstreamConn", status: int) -> None:
        self.resp_started = True
        self.status = status
        ctx = self.ctx
        node = self.node
        assert node is not None
        if status >= 500 or node.consecutive_5xx:    # the common answer after another ends nothing: no call
            ctx.outlier.response(node, status, _now())
        self.deadline = self.t0 + ctx.timeouts.total
        parts = conn.lines
        sl = STATUS_LINES.get(status)
        parts.insert(0, sl if sl is not None else b"HTTP/1.1 %d Unknown\r\n" % status)
        if not conn.has_sb:
            parts.append(node.served_by)
        if self.cookie_line is not None:
            parts.append(self.cookie_line)
        if self.head_only or status in (204, 304):
            self.resp_mode = NOBODY
            if conn.cl is not None:
                parts.append(b"Content-Length: " + conn.cl + b"\r\n")
        elif conn.cl is not None and not conn.te:
            self.resp_mode = RAW
            parts.append(b"Content-Length: " + conn.cl + b"\r\n")
        else:
            # chunked from the node, or a body that ends when the node closes: re-framed as chunked
            # (HTTP/1.0 clients get it raw and the connection closes after it)
            self.resp_eof_body = not conn.te
            if self.http10:
                self.resp_mode = RAW
                self.keep_alive = False
            else:
                self.resp_mode = CHUNK
                parts.append(b"Transfer-Encoding: chunked\r\n")
        if not self.keep_alive:
            parts.append(b"Connection: close\r\n\r\n")
        elif self.http10:
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        # written together with the first body bytes (one send() per small response, not two)
        self.resp_head = b"".join(parts)

    def on_response_body(self, data: bytes) -> None:
        self.resp_bytes += len(data)
        head = self.resp_head
        if head is not None:
            self.resp_head = None
            if self.resp_mode == CHUNK:
                self.front.transport.write(head + b"%x\r\n" % len(data) + data + b"\r\n")
            elif len(data) < 16384:
                self.front.transport.write(head + data)
            else:
                self.front.transport.writelines((head, data))
        elif self.resp_mode == CHUNK:
            self.front.transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))
        elif self.resp_mode == RAW:
            self.front.transport.write(data)

    def on_response_complete(self, conn: "UpstreamConn", reusable: bool) -> None:
        head = self.resp_head
        if head is not None:
            self.resp_head = None
            self.front.transport.write(head + b"0\r\n\r\n" if self.resp_mode == CHUNK else head)
        elif self.resp_mode == CHUNK:
            self.front.transport.write(b"0\r\n\r\n")
        now = _now()
        if reusable and self.body_done and not self.resp_eof_body:
            conn.pool.release(conn, now)
        else:
            conn.close()
        self.up = None
        self.finish("ok", True, now)

    # -- failures ----------------------------------------------------------------------------------------------
    def connect_failed(self, node: Node, reason: str) -> None:
        now = _now()
        self._end_attempt(node, now)
        self.ctx.outlier.connect_failure(node, now, reason)
        self.ctx.routing.refresh(now)
        if self.done:
            return
        self.sent = False
        self.retry_or_fail(reason, budget_free=True)

    def upstream_error(self, conn: "UpstreamConn", kind: str) -> None:
        """The node connection died (reset/EOF/garbage) before the response was complete."""
        self.up = None
        node = self.node
        assert node is not None
        now = _now()
        self._end_attempt(node, now)
        if self.done:
            return
        if kind == "upgrade":   # a 101/Upgrade answer: the router does not tunnel; not the node's failure
            return self.fail_local(502, "upstream_upgrade")
        if kind in ("response_head_too_large", "bad_transfer_coding"):   # a broken or hostile node: no retry
            self.ctx.outlier.eject(node, now, kind)
            return self.fail_local(502, kind)
        stale = conn.reused and not conn.got_bytes and kind == "reset"
        if not stale:
            self.ctx.outlier.eject(node, now, kind)
        if self.resp_started:
            self.status = self.status or 502
            self.front.abort()
            self.finish("upstream_" + kind, count_node=False)
            return
        replayable = self.body is not None and (self.idempotent or stale)
        if replayable:
            self.pending = list(self.body)  # type: ignore[arg-type]
            self.retry_or_fail(kind, budget_free=False)
        else:
            self.fail_local(502, kind)

    def retry_or_fail(self, reason: str, budget_free: bool) -> None:
        ctx = self.ctx
        if self.attempts >= ctx.max_attempts:
            return self.fail_local(503 if reason.startswith("connect") else 502, reason)
        if not budget_free and not self.retrying:
            if not ctx.retry_budget.try_acquire():
                ctx.retry_budget.wait(self)   # resume_retry() once a slot is free (bounded by the deadline)
                return
            self.retrying = True
        self._retry()

    def resume_retry(self) -> None:
        self.waiting_retry = False
        if self.done:
            return
        self.retrying = True
        self._retry()

    def _retry(self) -> None:
        """Another attempt, counted against the node the last one failed on."""
        node = self.node
        assert node is not None, "a retry follows a failed attempt on a node"
        self.ctx.counters.retries += 1
        node.retries += 1
        self.dispatch()

    def timeout(self) -> None:
        if self.queued:
            self._leave_queue()
            return self.fail_local(503, "queue_timeout")
        client_slow = not self.body_done and not self.front.paused_by_upstream_hint
        node = self.node
        if self._drop_up() and not client_slow:
            assert node is not None
            now = _now()
            node.cluster.records_for(self.bucket).attempt_failed(now)
            self.ctx.outlier.eject(node, now, "timeout")
        if client_slow and not self.resp_started:   # the client stalled its body: not the node's fault
            return self.fail_local(408, "body_timeout")
        if self.resp_started:
            self.front.abort()
            self.finish("timeout", count_node=False)
        else:
            self.fail_local(504, "timeout")

    def fail_local(self, status: int, reason: str, body: bytes | None = None) -> None:
        self.answer_local(status, reason, b"", body)

    def answer_local(self, status: int, reason: str, headers: bytes, body: bytes | None = None,
                     content_type: bytes = b"text/plain") -> None:
        """An answer of the router's own (Envoy: a local reply); `headers` whole lines it adds."""
        self.status = status
        self.resp_started = True
        if not self.body_done:
            self.keep_alive = False
        retry_after = self.ctx.limits.retry_after if status == 503 else None
        self.front.transport.write(local_response(status, not self.keep_alive, retry_after, body, self.head_only,
                                                  headers, content_type))
        self.finish(reason, count_node=False)

    def _drop_up(self) -> bool:
        up = self.up
        if up is None:
            return False
        self.up = None
        up.close()
        node = self.node
        assert node is not None, "a connection belongs to an attempt on a node"
        self._end_attempt(node)
        return True

    def _end_attempt(self, node: Node, failed_at: float | None = None) -> None:
        """The attempt on `node` is over without a response: its outstanding slot is freed and, when it
        failed (connect failure, reset), the node's error count and its cluster's records say so."""
        node.outstanding -= 1
        if failed_at is not None:
            node.errors += 1
            node.cluster.records_for(self.bucket).attempt_failed(failed_at)

    def _leave_queue(self) -> None:
        """Off the cluster's queue before it got a slot (timed out, client gone, failed): nothing to release."""
        limit = self.limit
        assert limit is not None, "a queued exchange waits on its cluster's limit"
        self.queued = False
        limit.remove(self)
        self.limit = None

    def abort_upstream_for_bad_body(self, status: int, reason: str) -> None:
        self._drop_up()
        self.fail_local(status, reason)

    def abort(self) -> None:
        """The client went away."""
        if self.done:
            return
        if self.queued:
            self._leave_queue()
        self._drop_up()
        self.status = self.status or 499
        self.finish("client_abort", count_node=False)

    # -- accounting --------------------------------------------------------------------------------------------
    def finish(self, outcome: str, count_node: bool = True, now: float = 0.0) -> None:
        if self.done:
            return
        self.done = True
        self.outcome = outcome
        ctx = self.ctx
        now = now or _now()
        if self.queued:    # failed while waiting in the cluster queue: it never held a slot
            self._leave_queue()
        node = self.node
        if count_node and node is not None:
            node.outstanding -= 1
            node.status_counts[self.status // 100] += 1
            if self.bucket < BUCKETS:
                node.cluster.observe(now - self.t0, now, self.status < 500)
            else:                                        # a tester's: apart (testers.py)
                node.cluster.observe_tester(now - self.t0, now, self.status < 500)
            if self.shadowed:                            # beside its copy's answer (mirror.py)
                node.cluster.shadow_records.answered(now, now - self.t0, self.status < 500)
        else:
            ctx.counters.local_response(self.status)
        budget = ctx.retry_budget
        budget.active -= 1
        if self.retrying:
            self.retrying = False
            budget.release()
        limit = self.limit
        if limit is not None:
            self.limit = None
            nxt = limit.release()
            if nxt is not None:
                nxt.queued = False     # owns the slot now; started on the next loop turn, never re-entrantly
                ctx.loop.call_soon(nxt.dispatch_queued)   # type: ignore[union-attr,attr-defined]
        if ctx.access_log is not None:
            ctx.access_log.log(self.front.peer, self.method, self.url, self.status, self.resp_bytes, now - self.t0,
                               node.label if node is not None else "-", self.attempts, self.bucket, self.outcome)
        self.front.exchange_done(now)


