"""Per-request records of a cluster, by second: what the canary analysis and the proactive shift judge.

Prometheus histograms (metrics.py) round latencies into 15 buckets, too coarse for a rank test, so each
cluster also keeps the last hour of its requests second by second: exact counts of good and failed
answers, and up to `SAMPLES_PER_SECOND` latencies (the first of each second: at most 720,000 floats an
hour, bounded whatever the traffic). A failed attempt that was retried elsewhere still counts against the
cluster it failed on, so a canary whose errors the retries hide is still judged by them.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

SAMPLES_PER_SECOND: Final = 200
KEEP_SECONDS: Final = 3600


@dataclass(slots=True)
class Second:
    """One second of a cluster's requests."""
    at: int
    good: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass(slots=True)
class Window:
    """What a cluster did over a time window: counts and the latency samples (seconds)."""
    good: int
    failed: int
    latencies: list[float]

    @property
    def total(self) -> int:
        return self.good + self.failed

    @property
    def success_percent(self) -> float:
        return 100.0 * self.good / self.total if self.total else 100.0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 < q <= 100); 0 for no values."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * q // 100))   # ceil(n * q / 100)
    return sorted_values[int(rank) - 1]


class Records:
    """Appended on the event loop at each answer (monotonic seconds); read by the admin worker's automation."""

    __slots__ = ("seconds", "current")

    def __init__(self) -> None:
        self.seconds: deque[Second] = deque(maxlen=KEEP_SECONDS)
        self.current = Second(-1)

    def _second(self, now: float) -> Second:
        at = int(now)
        cur = self.current
        if cur.at != at:
            cur = self.current = Second(at)
            self.seconds.append(cur)
        return cur

    def answered(self, now: float, seconds: float, ok: bool) -> None:
        """A response from a node of the cluster; `ok` is status < 500."""
        cur = self.current if self.current.at == int(now) else self._second(now)
        if ok:
            cur.good += 1
        else:
            cur.failed += 1
        if len(cur.latencies) < SAMPLES_PER_SECOND:
            cur.latencies.append(seconds)

    def attempt_failed(self, now: float) -> None:
        """A connect failure, reset or timeout on a node of the cluster (whether or not a retry saved it)."""
        self._second(now).failed += 1

    def window(self, start: float, end: float) -> Window:
        """Everything recorded in the whole seconds from `start` up to `end` (monotonic)."""
        good = failed = 0
        latencies: list[float] = []
        lo, hi = int(start), int(end)
        for s in self.seconds:
            if lo <= s.at <= hi:
                good += s.good
                failed += s.failed
                latencies.extend(s.latencies)
        return Window(good, failed, latencies)


def per_second(records: Records, now: float, seconds: int, to_wall: float) -> list[dict[str, float]]:
    """The last `seconds` of a cluster, one point per second with traffic, for the dashboard's live charts:
    wall time, answers, errors and the p50/p95/p99 of that second's samples (milliseconds)."""
    hi = int(now)              # the current second is still filling: left out, so the charts do not dip
    lo = hi - seconds
    points = []
    for s in records.seconds:
        if not lo < s.at < hi:
            continue
        lat = sorted(s.latencies)
        points.append({"t": s.at + to_wall, "answers": s.good + s.failed, "failed": s.failed,
                       **{f"p{q}": round(percentile(lat, q) * 1000, 3) for q in (50, 95, 99)}})
    return points
