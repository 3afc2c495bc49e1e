"""Every response of a run by wall-clock second, cluster and request name: the source of plots, steps and windows.

Why samples and not per-second histograms: a step (12 % of the canary ramp, the failover window) is
a time window that only the master knows, and a whole-range HDR histogram per second would cost
~160 KB each. A run's samples are small (two integers per response: 60,000 responses are ~1 MB), merge
across workers by concatenation, and give exact figures for any window through the same HDR
histograms as the whole run (latency.Recorder), so a step's p99 is computed like the run's.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from loadtests.latency import PERCENTILES

UNATTRIBUTED = "unattributed"
Key = tuple[str, str]  # (cluster or "", request name)


class Timeline:
    """Samples of one process (or, on the master, of all of them) keyed by whole wall-clock second."""

    def __init__(self) -> None:
        # second -> (cluster, name) -> [errors, raw µs..., corrected µs...] kept as two lists
        self.buckets: dict[int, dict[Key, tuple[list[int], list[int], list[int]]]] = {}

    def add(self, second: int, cluster: str | None, name: str, raw: int, corrected: int, failed: bool) -> None:
        entry = self.buckets.setdefault(second, {}).get((cluster or "", name))
        if entry is None:
            entry = self.buckets[second][cluster or "", name] = ([0], [], [])
        entry[0][0] += failed
        entry[1].append(raw)
        entry[2].append(corrected)

    def drain(self) -> list[list[Any]]:
        """Everything recorded since the last drain, JSON-able, and forget it (a worker's report)."""
        rows = [[second, cluster, name, errors[0], raw, corrected]
                for second, keys in self.buckets.items() for (cluster, name), (errors, raw, corrected) in keys.items()]
        self.buckets = {}
        return rows

    def merge(self, rows: Iterable[list[Any]]) -> None:
        """Add a drain() of another process: samples concatenate, so nothing is approximated."""
        for second, cluster, name, errors, raw, corrected in rows:
            entry = self.buckets.setdefault(int(second), {}).get((cluster, name))
            if entry is None:
                entry = self.buckets[int(second)][cluster, name] = ([0], [], [])
            entry[0][0] += int(errors)
            entry[1].extend(raw)
            entry[2].extend(corrected)

    def seconds(self) -> list[int]:
        return sorted(self.buckets)

    def window(self, start: float, end: float) -> dict[str, Any]:
        """The figures of the responses whose second lies in [start, end), in summary.json's shape (total,
        clusters, endpoints, unattributed, and `requests`: counts per cluster and request name): a step's. Exact nearest-rank percentiles of the
        samples, computed with a C sort: cheap enough to judge a capacity step while the run goes on
        (HDR percentiles cost ~2 ms each in pure Python, a stall of the generator's loop)."""
        groups: dict[tuple[str, str], _Group] = {}
        placed: dict[str, dict[str, int]] = {}   # cluster -> request name -> count: where the router sent what
        for second in range(math.floor(start), math.ceil(end)):
            for (cluster, name), (errors, raw, corrected) in self.buckets.get(second, {}).items():
                by_name = placed.setdefault(cluster or UNATTRIBUTED, {})
                by_name[name] = by_name.get(name, 0) + len(raw)
                for key in (("total", ""), ("clusters" if cluster else UNATTRIBUTED, cluster), ("endpoints", name)):
                    group = groups.setdefault(key, _Group())
                    group.errors += errors[0]
                    group.raw.extend(raw)
                    group.corrected.extend(corrected)
        result: dict[str, Any] = {"total": groups.pop(("total", ""), _Group()).figures(), "clusters": {},
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
        for second in self.seconds():
            clusters: dict[str, dict[str, Any]] = {}
            for (cluster, _name), (errors, raw, fixed) in self.buckets[second].items():
                into = clusters.setdefault(cluster or "unattributed", {"errors": 0, "samples": []})
                into["errors"] += errors[0]
                into["samples"].extend(fixed if corrected else raw)
            rows.append({"t": second - origin,
                         "clusters": {name: _second_figures(value["samples"], value["errors"])
                                      for name, value in sorted(clusters.items())}})
        return rows


class _Group:
    """One group's samples within a window."""

    def __init__(self) -> None:
        self.errors = 0
        self.raw: list[int] = []
        self.corrected: list[int] = []

    def figures(self) -> dict[str, Any]:
        """As latency.Series.figures: ms, `corrected` only where it differs."""
        if not self.raw:
            return {"count": 0, "errors": self.errors, **{name: None for name in PERCENTILES}}
        raw, corrected = _ranks(self.raw), _ranks(self.corrected)
        result: dict[str, Any] = {"count": len(self.raw), "errors": self.errors, **raw, "max": max(self.raw) / 1000}
        if corrected != raw:
            result["corrected"] = corrected
        return result


def _ranks(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {name: ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] / 1000 for name, p in PERCENTILES.items()}


def _second_figures(samples: list[int], errors: int) -> dict[str, Any]:
    """Nearest-rank percentiles of one second's samples, in milliseconds."""
    ranks = _ranks(samples)
    return {"count": len(samples), "errors": errors, "p50": ranks["p50"], "p95": ranks["p95"], "p99": ranks["p99"]}
