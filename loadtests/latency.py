"""Tail latency recorded honestly: HDR histograms per cluster and request name, raw and corrected for coordinated omission.

Why not Locust's own percentiles: Locust rounds response times into coarse buckets (1 ms under
100 ms, 10 ms to 1 s, 100 ms above) and, being closed-loop, sends nothing while a user waits, so
a stall hides its own victims (coordinated omission; its report, locust #2347, was closed). In the
open model (`--rate`) every request has an intended send time on a fixed schedule; wrk2's method
is to measure latency from that time, so a request that could not be sent because the server
stalled is charged the wait. Both figures are kept: `raw` from the actual send, `corrected` from
the intended one; they differ exactly when the generator fell behind its schedule.

HDR histograms (the `hdrhistogram` package) keep 3 significant digits from 1 µs to 10 min and add
exactly, so workers of a distributed run ship them encoded and the master adds them; percentiles
of workers could not be averaged.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes: no request of ours is allowed longer
DIGITS = 3
PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
TOTAL = "total"
UNATTRIBUTED = "unattributed"   # responses without X-Served-By: refused connections, timeouts, the router's own answers


def histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def us(seconds: float) -> int:
    """Seconds as whole microseconds within the histograms' range."""
    return min(HIGHEST_US, max(LOWEST_US, round(seconds * 1_000_000)))


@dataclass
class Series:
    """One group's requests (all, one cluster, or one request name): counts and both histograms."""

    raw: HdrHistogram = field(default_factory=histogram)
    corrected: HdrHistogram = field(default_factory=histogram)
    errors: int = 0

    @property
    def count(self) -> int:
        return self.raw.get_total_count()

    def add(self, other: Series) -> None:
        self.raw.add(other.raw)
        self.corrected.add(other.corrected)
        self.errors += other.errors

    def figures(self) -> dict[str, Any]:
        """summary.json's figures in milliseconds; `corrected` only where it differs from raw."""
        if not self.count:
            return {"count": 0, "errors": self.errors, **{name: None for name in PERCENTILES}}
        raw = {name: self.raw.get_value_at_percentile(p) / 1000 for name, p in PERCENTILES.items()}
        corrected = {name: self.corrected.get_value_at_percentile(p) / 1000 for name, p in PERCENTILES.items()}
        result: dict[str, Any] = {"count": self.count, "errors": self.errors, **raw,
                                  "max": self.raw.get_max_value() / 1000}
        differs = {name: value for name, value in corrected.items() if value != raw[name]}
        if differs:
            result["corrected"] = corrected
        return result


class Recorder:
    """Every response of one generator process, by cluster and by request name, plus all of them."""

    def __init__(self) -> None:
        self.total = Series()
        self.clusters: dict[str, Series] = {}
        self.endpoints: dict[str, Series] = {}
        self.unattributed = Series()
        self.worst_lag = 0.0  # longest wait between a request's intended and actual send, seconds

    def record(self, name: str, cluster: str | None, sent: float, done: float, intended: float | None = None,
               failed: bool = False) -> tuple[int, int]:
        """One response: `sent`/`done` are clock readings (s); `intended` the schedule's send time in the
        open model (None in the closed model: nothing was scheduled, so nothing is corrected).
        Returns the raw and corrected latencies it recorded, in µs (the timeline keeps the same values)."""
        intended = sent if intended is None else min(intended, sent)
        self.worst_lag = max(self.worst_lag, sent - intended)
        raw, corrected = us(done - sent), us(done - intended)
        groups = [self.total, self.endpoints.setdefault(name, Series())]
        groups.append(self.clusters.setdefault(cluster, Series()) if cluster else self.unattributed)
        for series in groups:
            series.raw.record_value(raw)
            series.corrected.record_value(corrected)
            series.errors += failed
        return raw, corrected

    def encode(self) -> dict[str, Any]:
        """A JSON-able snapshot, as a worker sends it to the master (Locust's report messages)."""
        def one(series: Series) -> list[Any]:
            return [series.raw.encode().decode("ascii"), series.corrected.encode().decode("ascii"), series.errors]
        return {TOTAL: one(self.total), "clusters": {k: one(v) for k, v in self.clusters.items()},
                "endpoints": {k: one(v) for k, v in self.endpoints.items()}, "worst_lag": self.worst_lag,
                UNATTRIBUTED: one(self.unattributed)}

    def merge(self, encoded: Mapping[str, Any]) -> int:
        """Add another process's snapshot: histograms add, so merged percentiles are exact. Returns how many
        responses it held."""
        def one(item: list[Any]) -> Series:
            return Series(HdrHistogram.decode(item[0].encode("ascii")), HdrHistogram.decode(item[1].encode("ascii")),
                          int(item[2]))
        total = one(encoded[TOTAL])
        self.total.add(total)
        self.unattributed.add(one(encoded[UNATTRIBUTED]))
        for group, mine in (("clusters", self.clusters), ("endpoints", self.endpoints)):
            for key, item in encoded[group].items():
                mine.setdefault(key, Series()).add(one(item))
        self.worst_lag = max(self.worst_lag, float(encoded["worst_lag"]))
        return total.count

    def tails(self, corrected: bool) -> dict[str, tuple[float, float]]:
        """Each cluster's p95 and p99 so far (ms), for the live progress line: only the four percentiles it
        shows, as each costs ~2 ms of pure-Python histogram walking, a stall for the generator's loop."""
        result = {}
        for name, series in sorted(self.clusters.items()):
            if series.count:
                histogram = series.corrected if corrected else series.raw
                result[name] = (histogram.get_value_at_percentile(95.0) / 1000,
                                histogram.get_value_at_percentile(99.0) / 1000)
        return result

    def summary(self) -> dict[str, Any]:
        """The figures of summary.json: total, clusters and endpoints (what loadtests/thresholds.py judges)."""
        return {TOTAL: self.total.figures(),
                "clusters": {k: v.figures() for k, v in sorted(self.clusters.items())},
                "endpoints": {k: v.figures() for k, v in sorted(self.endpoints.items())},
                "worst_send_lag_ms": round(self.worst_lag * 1000, 3),
                **({UNATTRIBUTED: self.unattributed.figures()} if self.unattributed.count else {})}


def merged(snapshots: Iterable[Mapping[str, Any]]) -> Recorder:
    recorder = Recorder()
    for snapshot in snapshots:
        recorder.merge(snapshot)
    return recorder
