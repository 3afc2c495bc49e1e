"""Retry budget (Envoy): concurrent retries <= max(min_concurrent, budget_percent of active requests)."""
from __future__ import annotations

from collections import deque
from typing import Protocol


class RetryWaiter(Protocol):
    """An exchange waiting for a retry slot (canary/dataplane/exchange.py); its deadline bounds the wait."""

    done: bool
    waiting_retry: bool

    def resume_retry(self) -> None: ...


class RetryBudget:
    """Bounds retry storms when a whole cluster dies: retries are a share of live traffic, not unbounded.

    `active` counts requests in flight (their heads parsed, not yet answered); a retry that finds no slot
    waits here, first come first served, and is resumed by the release of a slot."""

    __slots__ = ("frac", "min_concurrent", "active", "retrying", "denied", "waiters")

    def __init__(self, budget_percent: float, min_concurrent: int) -> None:
        self.frac = budget_percent / 100.0
        self.min_concurrent = min_concurrent
        self.active = 0
        self.retrying = 0
        self.denied = 0
        self.waiters: deque[RetryWaiter] = deque()

    def try_acquire(self) -> bool:
        if self.retrying < max(self.min_concurrent, self.active * self.frac):
            self.retrying += 1
            return True
        self.denied += 1
        return False

    def wait(self, waiter: RetryWaiter) -> None:
        """No slot now: `waiter.resume_retry()` runs once one is free (unless it is done by then)."""
        waiter.waiting_retry = True
        self.waiters.append(waiter)

    def release(self) -> None:
        """A retry finished: its slot goes to the first waiter still waiting, if the budget allows."""
        self.retrying -= 1
        waiters = self.waiters
        while waiters:
            w = waiters.popleft()
            if w.done or not w.waiting_retry:
                continue
            if self.try_acquire():
                w.resume_retry()
            else:
                waiters.appendleft(w)
            break
