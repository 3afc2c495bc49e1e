"""The nodes' own latency histograms, read from each node's /metrics before and after a run: the per-cluster tail of the calls Dovecot makes for the IMAP logins, which the generator never sees."""
# Why the nodes' metrics: Dovecot's calls (POST /api/mail/check for an app password, /oidc/introspect/ for a bearer
# token) go from Dovecot to the router and on to a node; no response reaches the generator, so no X-Served-By either.
# The router's histogram (canary_request_duration_seconds) is per cluster over every route, so it cannot tell these
# calls apart. Each node's loginsvc_request_duration_seconds is per view (mail-check, introspect), and
# loginsvc_build_info names the node's cluster as X-Served-By does: the difference of two readings is the calls of
# the run's window, per cluster. Its buckets (1, 2.5, 5, 10, 25, 50, 100, 250 ms, ...) bound what it can say: a
# percentile is estimated as Prometheus' histogram_quantile does (linear within its bucket), and the bucket is kept.
from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from deploy.stack import StackError, StackSpec
from loadtests.mail_delay import aligned
from loadtests.run_settings import IMAP_ACCOUNTS, RunSettings

METRIC = "loginsvc_request_duration_seconds"
BUILD_INFO = "loginsvc_build_info"
VIEWS = ("mail-check", "introspect")   # the URL names of POST /api/mail/check and /oidc/introspect/
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
SCRAPE_TIMEOUT = 3.0
MAX_BODY = 4 * 1024 * 1024


@dataclass
class Histogram:
    """One view's calls on one node (or summed): cumulative counts per upper bound (s), and counts per status."""

    buckets: dict[float, float] = field(default_factory=dict)
    statuses: dict[str, float] = field(default_factory=dict)

    @property
    def count(self) -> float:
        return self.buckets.get(math.inf, 0.0)

    def add(self, other: Histogram, sign: float = 1.0) -> None:
        for bound, count in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + sign * count
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0.0) + sign * count

    def minus(self, before: Histogram) -> Histogram | None:
        """The calls since `before`; None when a count went down (the node restarted: its counters began again)."""
        result = Histogram()
        result.add(self)
        result.add(before, -1.0)
        if any(v < 0 for v in (*result.buckets.values(), *result.statuses.values())):
            return None
        return result


@dataclass
class Reading:
    """One node's /metrics: its cluster (loginsvc_build_info) and a histogram per view of VIEWS."""

    cluster: str | None
    views: dict[str, Histogram]


def parse(text: str) -> Reading:
    """A node's Prometheus text exposition, reduced to what the run reports (label sets of a view are summed)."""
    cluster: str | None = None
    views: dict[str, Histogram] = {}
    for family in text_string_to_metric_families(text):
        if family.name == BUILD_INFO:
            cluster = next((s.labels.get("cluster") for s in family.samples), None)
        if family.name != METRIC:
            continue
        for sample in family.samples:
            view = sample.labels.get("view")
            if view not in VIEWS:
                continue
            histogram = views.setdefault(view, Histogram())
            if sample.name == METRIC + "_bucket":
                bound = float(sample.labels["le"])
                histogram.buckets[bound] = histogram.buckets.get(bound, 0.0) + sample.value
            elif sample.name == METRIC + "_count":
                status = sample.labels.get("status", "?")
                histogram.statuses[status] = histogram.statuses.get(status, 0.0) + sample.value
    return Reading(cluster, views)


def quantile(histogram: Histogram, q: float) -> tuple[float, float, float] | None:
    """(estimate, bucket's lower bound, upper bound) in ms, as histogram_quantile: linear within the bucket where the
    rank falls; in the +Inf bucket the estimate is the highest finite bound. None without calls."""
    total = histogram.count
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in sorted(histogram.buckets):
        count = histogram.buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower * 1000, lower * 1000, math.inf
            share = (rank - below) / (count - below) if count > below else 1.0
            return (lower + (bound - lower) * share) * 1000, lower * 1000, bound * 1000
        lower, below = bound, count
    return None


def figures(histogram: Histogram) -> dict[str, Any]:
    """summary.json's figures of one group: count, statuses, percentiles (ms) and each one's bucket [lo, hi]."""
    result: dict[str, Any] = {"count": int(histogram.count),
                              "statuses": {k: int(v) for k, v in sorted(histogram.statuses.items()) if v}}
    buckets = {}
    for name, q in QUANTILES.items():
        found = quantile(histogram, q)
        result[name] = None if found is None else round(found[0], 3)
        buckets[name] = None if found is None else [found[1], None if math.isinf(found[2]) else found[2]]
    result["buckets"] = buckets
    return result


def read(url: str, timeout: float = SCRAPE_TIMEOUT) -> Reading:
    """GET URL/metrics (a node on this machine: loopback needs no token)."""
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as response:
        return parse(response.read(MAX_BODY).decode("utf-8", "replace"))


class Window:
    """Every node read at the start and at the end of a run; the difference per cluster and view."""

    def __init__(self, nodes: Mapping[str, tuple[str, str]]) -> None:
        self.nodes = dict(nodes)          # node name -> (its cluster in the stack spec, its URL)
        self.before: dict[str, Reading] = {}
        self.problems: dict[str, str] = {}

    def _read_all(self) -> dict[str, Reading]:
        readings = {}
        for name, (_cluster, url) in self.nodes.items():
            try:
                readings[name] = read(url)
            except (OSError, ValueError) as exc:
                self.problems[name] = f"unreadable: {getattr(exc, 'reason', exc)}"
        return readings

    def start(self) -> None:
        self.before = self._read_all()

    def finish(self) -> dict[str, Any]:
        """summary.json's `backend`: per view, the calls of the window per cluster and in all, and each node's state."""
        self.problems = {name: f"unreadable at the start: {why}" for name, why in self.problems.items()}
        after = self._read_all()
        return window_figures(self.nodes, self.before, after, self.problems)


def window_figures(nodes: Mapping[str, tuple[str, str]], before: Mapping[str, Reading], after: Mapping[str, Reading],
                   problems: Mapping[str, str]) -> dict[str, Any]:
    """The difference of two readings of every node, summed per cluster (the node's own, else the stack spec's)."""
    states = dict(problems)
    sums: dict[str, dict[str, Histogram]] = {view: {} for view in VIEWS}
    for name, reading in after.items():
        cluster = reading.cluster or nodes[name][0]
        old = before.get(name)
        if name not in states:
            states[name] = "read" if old is not None else "read (not at the start: all its calls counted)"
        for view in VIEWS:
            now = reading.views.get(view, Histogram())
            since = now.minus(old.views.get(view, Histogram())) if old is not None else now
            if since is None:   # restarted during the run: what it answered before is lost, the rest counted
                states[name] = "restarted during the run: only its calls since then are counted"
                since = now
            sums[view].setdefault(cluster, Histogram()).add(since)
    views = {}
    for view, clusters in sums.items():
        total = Histogram()
        for histogram in clusters.values():
            total.add(histogram)
        views[view] = {"clusters": {c: figures(h) for c, h in sorted(clusters.items())}, "total": figures(total)}
    return {"source": f"each node's {METRIC} (view label), read before and after the run", "views": views,
            "nodes": dict(sorted(states.items()))}


def stack_nodes(var_dir: Path) -> dict[str, tuple[str, str]] | None:
    """node name -> (cluster, URL) of this machine's stack, from its spec (what Prometheus is pointed at too); None
    without a spec."""
    try:
        spec = StackSpec.load(var_dir)
    except StackError:
        return None
    return {node.name: (node.cluster, f"http://{node.address}") for node in spec.nodes}


def imap_summary(run: RunSettings, backend: Mapping[str, Any] | None) -> dict[str, Any]:
    """summary.json's `imap`: the journey's settings and the login service's side of its logins (`backend`)."""
    note = None if backend is not None else f"no stack spec under {run.var_dir}: the nodes' metrics were not read"
    return {"per_second": run.imap_per_second, "port": run.imap_port,
            "accounts": min(IMAP_ACCOUNTS, len(run.password_accounts)), "backend": dict(backend or {}), "note": note}


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):,.1f}"


def _bucket(bounds: Iterable[Any] | None) -> str:
    if not bounds:
        return ""
    lower, upper = list(bounds)
    return f" ({_ms(lower)}-{'inf' if upper is None else _ms(upper)})"


def rows(backend: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the back-end table: per view and cluster, calls, statuses and p50/p95/p99 with buckets."""
    header = ["", "calls", "statuses", *(f"{name} ms (bucket)" for name in QUANTILES)]
    body = []
    for view, groups in (backend.get("views") or {}).items():
        labelled = [(f"{view} {c}", f) for c, f in (groups.get("clusters") or {}).items() if f.get("count")]
        for label, figs in [*labelled, (f"{view} total", groups.get("total") or {})]:
            statuses = " ".join(f"{k}:{v}" for k, v in (figs.get("statuses") or {}).items()) or "-"
            body.append([label, f"{int(figs.get('count') or 0):,}", statuses,
                         *(_ms(figs.get(q)) + _bucket((figs.get("buckets") or {}).get(q)) for q in QUANTILES)])
    return header, body


def title(imap: Mapping[str, Any]) -> str:
    return (f"IMAP logins at {float(imap.get('per_second') or 0):g}/s to 127.0.0.1:{imap.get('port')} "
            f"({imap.get('accounts')} accounts' app passwords); the login service's side, by the node's cluster "
            "(server time, from the nodes' histograms: estimate within its bucket):")


def notes(imap: Mapping[str, Any]) -> list[str]:
    """What qualifies the table: nodes not read cleanly at both ends, and the run's note."""
    states = ((imap.get("backend") or {}).get("nodes") or {}).items()
    odd = [f"node {name}: {state}" for name, state in states if state != "read"]
    return odd + ([f"note: {imap['note']}"] if imap.get("note") else [])


def lines(summary: Mapping[str, Any]) -> list[str]:
    """The IMAP section for the terminal (nothing for a run without IMAP logins)."""
    imap = summary.get("imap")
    if not imap:
        return []
    return [title(imap), *aligned(*rows(imap.get("backend") or {})), *notes(imap)]
