"""Retry budget (Envoy): concurrent retries <= max(min_concurrent, budget_percent of active requests)."""
from __future__ import annotations


class RetryBudget:
    """Bounds retry storms when a whole cluster dies: retries are a share of live traffic, not unbounded."""

    __slots__ = ("frac", "min_concurrent", "active", "retrying", "total", "denied")

    def __init__(self, budget_percent: float, min_concurrent: int) -> None:
        self.frac = budget_percent / 100.0
        self.min_concurrent = min_concurrent
        self.active = 0
        self.retrying = 0
        self.total = 0
        self.denied = 0

    def try_acquire(self) -> bool:
        if self.retrying < max(self.min_concurrent, self.active * self.frac):
            self.retrying += 1
            self.total += 1
            return True
        self.denied += 1
        return False

    def release(self) -> None:
        self.retrying -= 1
