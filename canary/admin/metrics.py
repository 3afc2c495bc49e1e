"""Prometheus exposition: plain integer counters on the hot path, turned into metric families at scrape."""
from __future__ import annotations

import time
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from canary.dataplane.cluster import LATENCY_BOUNDS
from canary.dataplane.request_context import RequestContext
from canary.discovery.health_check import HealthChecker

_CLASSES = ("local", "1xx", "2xx", "3xx", "4xx", "5xx")


class RouterCollector:
    """Reads the counters of the nodes, clusters and request context; nothing here runs per request."""

    def __init__(self, ctx: RequestContext, health: HealthChecker, state: dict[str, Any],
                 automation_leader: bool) -> None:
        self.ctx = ctx
        self.health = health
        self.state = state
        self.automation_leader = automation_leader

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        counters = ctx.counters
        now = time.monotonic()
        r = ctx.routing
        req = CounterMetricFamily("canary_requests", "Requests answered by a node, by status class",
                                  labels=["cluster", "node", "code_class"])
        healthy = GaugeMetricFamily("canary_node_healthy", "1 if the node takes traffic (healthy, not "
                                    "ejected, not drained)", labels=["cluster", "node", "state"])
        outst = GaugeMetricFamily("canary_node_outstanding_requests", "In-flight requests", labels=["cluster", "node"])
        errs = CounterMetricFamily("canary_upstream_errors", "Connect failures, resets, timeouts per node",
                                   labels=["cluster", "node"])
        retr = CounterMetricFamily("canary_node_retries", "Requests retried away from the node",
                                   labels=["cluster", "node"])
        avail = GaugeMetricFamily("canary_cluster_available", "1 if the cluster has a usable node", labels=["cluster"])
        role = GaugeMetricFamily("canary_cluster_is_canary", "1 for the canary cluster, 0 for stable",
                                 labels=["cluster"])
        fo = CounterMetricFamily("canary_failovers", "Requests sent to this cluster because their home "
                                 "cluster had no healthy node", labels=["cluster"])
        hist = HistogramMetricFamily("canary_request_duration_seconds", "Time from request head to response end",
                                     labels=["cluster"])
        slow = GaugeMetricFamily("canary_slow_start_factor", "Fraction of the target share a recovering "
                                 "cluster takes (1 = fully back)", labels=["cluster"])
        qlen = GaugeMetricFamily("canary_queue_length", "Requests waiting for a concurrency slot", labels=["cluster"])
        active = GaugeMetricFamily("canary_cluster_active_requests", "Requests holding a concurrency slot",
                                   labels=["cluster"])
        rej = CounterMetricFamily("canary_overload_rejections", "503 by concurrency limit or queue timeout",
                                  labels=["cluster", "reason"])
        for c in r.clusters.values():
            for n in c.nodes:
                for i, cls in enumerate(_CLASSES):
                    if i and n.status_counts[i]:
                        req.add_metric([c.name, n.name, cls], n.status_counts[i])
                st = n.state(now)
                healthy.add_metric([c.name, n.name, st], 1 if st == "healthy" else 0)
                outst.add_metric([c.name, n.name], n.outstanding)
                errs.add_metric([c.name, n.name], n.errors)
                retr.add_metric([c.name, n.name], n.retries)
            avail.add_metric([c.name], 1 if c.available else 0)
            role.add_metric([c.name], 1 if c is r.canary else 0)
            fo.add_metric([c.name], c.failovers_in)
            acc, buckets = 0, []
            for bound, cnt in zip(LATENCY_BOUNDS, c.lat_counts):
                acc += cnt
                buckets.append((repr(bound), acc))
            acc += c.lat_counts[-1]
            buckets.append(("+Inf", acc))
            hist.add_metric([c.name], buckets, c.lat_sum)
            slow.add_metric([c.name], r.slow[c.name].factor(now))
            lim = c.limit
            qlen.add_metric([c.name], len(lim.queue))
            active.add_metric([c.name], lim.active)
            rej.add_metric([c.name, "queue_full"], lim.rejected)
            rej.add_metric([c.name, "queue_timeout"], lim.timed_out)
        yield from (req, healthy, outst, errs, retr, avail, role, fo, hist, slow, qlen, active, rej)
        yield from self.testers()
        yield from self.mirror()
        ej = CounterMetricFamily("canary_ejections", "Outlier ejections by reason", labels=["cluster", "node", "reason"])
        for (cl, nd, reason), v in ctx.outlier.ejections_total.items():
            ej.add_metric([cl, nd, reason], v)
        yield ej
        local = CounterMetricFamily("canary_local_responses", "Responses generated by the router itself "
                                    "(400/408/413/431/502/503/504, 499 = client went away; "
                                    "200/503/404 for the health paths it answers)", labels=["code"])
        for code, v in sorted(counters.local_statuses.items()):
            local.add_metric([str(code)], v)
        yield local
        yield CounterMetricFamily("canary_retries", "Retried attempts (another node or cluster)",
                                  value=counters.retries)
        yield CounterMetricFamily("canary_retry_budget_exhausted", "Retries that had to wait for budget",
                                  value=ctx.retry_budget.denied)
        yield CounterMetricFamily("canary_panic_routed", "Requests routed in panic mode (no healthy cluster)",
                                  value=r.panics)
        yield CounterMetricFamily("canary_bad_requests", "Requests rejected by the strict parser",
                                  value=counters.bad_requests)
        if ctx.access_log is not None:
            yield CounterMetricFamily("canary_access_log_dropped_lines", "Access log lines dropped because "
                                      "stdout could not take them fast enough", value=ctx.access_log.dropped)
            yield CounterMetricFamily("canary_access_log_refusals_not_logged", "Refused requests (bad or "
                                      "oversized heads) beyond the access log's per-second cap, counted only",
                                      value=ctx.access_log.not_logged)
        yield CounterMetricFamily("canary_client_connections_refused", "Connections refused (429) beyond "
                                  "limits.max_connections_per_client", value=ctx.client_conns.refused)
        yield CounterMetricFamily("canary_router_paths_answered", "/healthz, /readyz, /metrics requests on the "
                                  "front port answered by the router itself", value=counters.router_path_answers)
        yield GaugeMetricFamily("canary_share_percent", "Configured canary share", value=r.percent)
        yield GaugeMetricFamily("canary_effective_share_percent", "Canary share after failover and slow start",
                                value=r.effective_percent(now))
        yield GaugeMetricFamily("canary_panic", "1 when no cluster is healthy", value=1 if r.panic else 0)
        shifted = GaugeMetricFamily("canary_proactive_shift_percent", "Share of the cluster's users moved to the "
                                    "other cluster by the proactive shift", labels=["cluster"])
        for name in r.clusters:
            shifted.add_metric([name], r.shift.get(name, 0.0))
        yield shifted
        plan = self.state.get("plan") if isinstance(self.state.get("plan"), dict) else {}
        status = GaugeMetricFamily("canary_plan_status", "1 for the status of the last ramp plan (running, paused, "
                                   "promoted, rolled_back, aborted)", labels=["status"])
        for name in ("running", "paused", "promoted", "rolled_back", "aborted"):
            status.add_metric([name], 1 if plan.get("status") == name else 0)
        yield status
        yield GaugeMetricFamily("canary_plan_step", "1-based step of the last ramp plan (0: none)",
                                value=plan.get("index", -1) + 1 if plan else 0)
        yield GaugeMetricFamily("canary_plan_mirror_step", "1 while the last ramp plan holds its mirror step (its "
                                "step is then the first user step, still to come)",
                                value=1 if plan.get("phase") == "mirror" else 0)
        yield GaugeMetricFamily("canary_automation_leader", "1 if this router holds the automation lease "
                                "(drives plans and proactive shifts)", value=1 if self.automation_leader else 0)
        yield GaugeMetricFamily("canary_client_connections", "Open client connections",
                                value=len(ctx.downstreams))
        yield CounterMetricFamily("canary_health_checks", "Active health checks run", value=self.health.checks_total)
        yield CounterMetricFamily("canary_health_check_failures", "Failed active health checks",
                                  value=self.health.failures_total)

    def testers(self) -> Iterator[Metric]:
        """Testers' traffic (testers.py): counted here, never in the duration histogram or the records."""
        answered = CounterMetricFamily("canary_tester_requests", "Testers' requests answered by a node of the "
                                       "cluster (left out of canary_request_duration_seconds and the analysis)",
                                       labels=["cluster"])
        for c in self.ctx.routing.clusters.values():
            answered.add_metric([c.name], c.tester_answers)
        yield answered
        yield GaugeMetricFamily("canary_tester_links", "Live tester links (opened or not)",
                                value=len(self.ctx.testers.links))

    def mirror(self) -> Iterator[Metric]:
        """Shadow traffic (mirror.py): copies made, their outcomes, and the ones dropped under pressure."""
        m = self.ctx.mirror
        share = GaugeMetricFamily("canary_mirror_percent", "Share of safe requests copied to the cluster",
                                  labels=["cluster"])
        for name in self.ctx.routing.clusters:
            share.add_metric([name], m.percent if m.on and m.target is not None and m.target.name == name else 0.0)
        yield share
        yield CounterMetricFamily("canary_mirror_copies", "Copies sent to the mirror target", value=m.copied)
        outcome = CounterMetricFamily("canary_mirror_answers", "Copies ended: answered (any status) or failed "
                                      "(connect failure, reset, timeout)", labels=["outcome"])
        outcome.add_metric(["answered"], m.answered)
        outcome.add_metric(["failed"], m.failed)
        yield outcome
        dropped = CounterMetricFamily("canary_mirror_dropped", "Copies not made, by reason (cluster_limit, "
                                      "router_load, in_flight, no_node)", labels=["reason"])
        for reason, n in m.dropped.items():
            dropped.add_metric([reason], n)
        yield dropped
        yield GaugeMetricFamily("canary_mirror_in_flight", "Copies waiting for an answer", value=len(m.in_flight))


def render(ctx: RequestContext, health: HealthChecker, state: dict[str, Any], automation_leader: bool) -> bytes:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RouterCollector(ctx, health, state, automation_leader))
    return generate_latest(reg)
