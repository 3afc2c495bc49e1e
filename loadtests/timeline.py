"""Every response of a run by wall-clock second, cluster and request name: the source of plots, steps and windows.

Why samples and not per-second histograms: a step (12 % of the canary ramp, the failover window) is
a time window that only the master knows, and a whole-range HDR histogram per second would cost
~160 KB each. A run's samples are small (two integers per response: 60,000 responses are ~1 MB), merge
across workers by concatenation, and give exact nearest-rank figures for any window, computed with a
C sort: cheap enough to judge a capacity step while the run goes on (an HDR percentile costs ~2 ms
of pure Python, a stall of the generator's loop).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from loadtests.latency import PERCENTILES, UNATTRIBUTED

Key = tuple[str, str]  # (cluster or "", request name)


class Samples:
    """Responses of one group (one second's cluster and name, or a whole window's group): errors and latencies (µs)."""

    def __init__(self) -> None:
        self.errors = 0
        self.raw: list[int] = []
        self.corrected: list[int] = []

    def extend(self, errors: int, raw: Iterable[int], corrected: Iterable[int]) -> None:
        self.errors += errors
        self.raw.extend(raw)
        self.corrected.extend(corrected)

    def figures(self) -> dict[str, Any]:
        """As latency.Series.figures: ms, `corrected` only where it differs."""
        if not self.raw:
            return {"count": 0, "errors": self.errors, **{name: None for name in PERCENTILES}}
        raw, corrected = _ranks(self.raw), _ranks(self.corrected)
        result: dict[str, Any] = {"count": len(self.raw), "errors": self.errors, **raw, "max": max(self.raw) / 1000}
        if corrected != raw:
            result["corrected"] = corrected
        return result


class Timeline:
    """Samples of one process (or, on the master, of all of them) keyed by whole wall-clock second."""

    def __init__(self) -> None:
        self.buckets: dict[int, dict[Key, Samples]] = {}

    def _samples(self, second: int, cluster: str | None, name: str) -> Samples:
        keys = self.buckets.setdefault(second, {})
        found = keys.get((cluster or "", name))
        if found is None:
            found = keys[cluster or "", name] = Samples()
        return found

    def add(self, second: int, cluster: str | None, name: str, raw: int, corrected: int, failed: bool) -> None:
        self._samples(second, cluster, name).extend(int(failed), (raw,), (corrected,))

    def drain(self) -> list[list[Any]]:
        """Everything recorded since the last drain, JSON-able, and forget it (a worker's report)."""
        rows = [[second, cluster, name, s.errors, s.raw, s.corrected]
                for second, keys in self.buckets.items() for (cluster, name), s in keys.items()]
        self.buckets = {}
        return rows

    def merge(self, rows: Iterable[list[Any]]) -> None:
        """Add a drain() of another process: samples concatenate, so nothing is approximated."""
        for second, cluster, name, errors, raw, corrected in rows:
            self._samples(int(second), cluster, name).extend(int(errors), raw, corrected)

    def window(self, start: float, end: float) -> dict[str, Any]:
        """The figures of the responses whose second lies in [start, end), in summary.json's shape (total,
        clusters, endpoints, unattributed, and `requests`: counts per cluster and request name): a step's."""
        groups: dict[tuple[str, str], Samples] = {}
        placed: dict[str, dict[str, int]] = {}   # cluster -> request name -> count: where the router sent what
        for second in range(math.floor(start), math.ceil(end)):
            for (cluster, name), samples in self.buckets.get(second, {}).items():
                by_name = placed.setdefault(cluster or UNATTRIBUTED, {})
                by_name[name] = by_name.get(name, 0) + len(samples.raw)
                for key in (("total", ""), ("clusters" if cluster else UNATTRIBUTED, cluster), ("endpoints", name)):
                    groups.setdefault(key, Samples()).extend(samples.errors, samples.raw, samples.corrected)
        result: dict[str, Any] = {"total": groups.pop(("total", ""), Samples()).figures(), "clusters": {},
                                  "endpoints": {}, "requests": {k: dict(sorted(v.items())) for k, v in sorted(placed.items())}}
        for (kind, key), group in sorted(groups.items()):
            if kind == UNATTRIBUTED:
                result[UNATTRIBUTED] = group.figures()
            else:
                result[kind][key] = group.figures()
        return result

    def rows(self, origin: float, corrected: bool) -> list[dict[str, Any]]:
        """report.py's timeline: per second since `origin`, per cluster, count, errors and p50/p95/p99 (ms)."""
        rows = []
        for second in sorted(self.buckets):
            clusters: dict[str, Samples] = {}
            for (cluster, _name), samples in self.buckets[second].items():
                clusters.setdefault(cluster or UNATTRIBUTED, Samples()).extend(
                    samples.errors, samples.raw, samples.corrected)
            rows.append({"t": second - origin, "clusters": {name: _second_figures(group, corrected)
                                                            for name, group in sorted(clusters.items())}})
        return rows


def _ranks(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {name: ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] / 1000 for name, p in PERCENTILES.items()}


def _second_figures(group: Samples, corrected: bool) -> dict[str, Any]:
    """One second's count, errors and nearest-rank p50/p95/p99 in milliseconds (corrected or raw)."""
    ranks = _ranks(group.corrected if corrected else group.raw)
    return {"count": len(group.raw), "errors": group.errors, "p50": ranks["p50"], "p95": ranks["p95"],
            "p99": ranks["p99"]}
