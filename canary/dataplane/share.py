"""Bucket-to-cluster mapping: monotone ramp (bucket < share*100 -> canary) and slow start after heal."""
from __future__ import annotations

from canary.dataplane.pin import BUCKETS


def canary_threshold(percent: float) -> float:
    """Buckets below this go to the canary; raising the percent only moves stable users to the canary."""
    return max(0.0, min(100.0, percent)) * BUCKETS / 100.0


class SlowStart:
    """Effective weight of a recovered cluster grows linearly from min_percent of its target over window s."""

    __slots__ = ("window", "min_frac", "since")

    def __init__(self, window: float, min_percent: float) -> None:
        self.window = window
        self.min_frac = min_percent / 100.0
        self.since: float | None = None

    def start(self, now: float) -> None:
        if self.window > 0:
            self.since = now

    def factor(self, now: float) -> float:
        if self.since is None:
            return 1.0
        elapsed = now - self.since
        if elapsed >= self.window:
            self.since = None
            return 1.0
        return self.min_frac + (1.0 - self.min_frac) * elapsed / self.window


def relative_factors(canary_factor: float, stable_factor: float) -> tuple[float, float]:
    """Both sides slow-starting (healed together, e.g. at start-up): only the difference shifts users.

    Scaled so the side further along counts as fully up; equal factors shift nobody, where taking
    both at face value would push each side's edge buckets to the other (a 12 % canary briefly at 21 %)."""
    top = max(canary_factor, stable_factor)
    return canary_factor / top, stable_factor / top


def pick_side(bucket: int, threshold: float, canary_factor: float, stable_factor: float) -> bool:
    """True -> canary. Home side by threshold; a side in slow start only takes the edge of its range.

    The canary keeps buckets [0, threshold*f_c); the stable keeps [BUCKETS-(BUCKETS-threshold)*f_s, BUCKETS);
    a bucket outside the recovering side's current range stays on the other side, so every user moves once.
    """
    if bucket < threshold:
        return bucket < threshold * canary_factor
    return not (bucket >= BUCKETS - (BUCKETS - threshold) * stable_factor)
