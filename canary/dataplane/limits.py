"""Per-cluster concurrency limit with a bounded FIFO queue: beyond both, a fast 503 (never an unbounded queue)."""
from __future__ import annotations

import enum
from collections import deque
from typing import Protocol


class Admission(enum.IntEnum):
    """What admit() decided for a request."""

    REJECTED = -1   # both the slots and the queue are full: a fast 503
    QUEUED = 0      # waits for a slot; release() hands it one, or the sweeper expires it
    ADMITTED = 1    # holds a slot: dispatch now


class Queueable(Protocol):
    """A request that can wait in the queue (canary/dataplane/exchange.py's Exchange)."""

    queued: bool
    queue_deadline: float

    def queue_timed_out(self) -> None: ...   # expired by the sweeper (see expire)


class ConcurrencyLimit:
    """Admission control for one cluster. Queued items are started by release() or expired by the sweeper."""

    __slots__ = ("max_active", "max_queue", "active", "queue", "rejected", "timed_out")

    def __init__(self, max_active: int, max_queue: int) -> None:
        self.max_active = max_active
        self.max_queue = max_queue
        self.active = 0
        self.queue: deque[Queueable] = deque()
        self.rejected = 0
        self.timed_out = 0

    def admit(self, item: Queueable) -> Admission:
        if self.active < self.max_active:
            self.active += 1
            return Admission.ADMITTED
        if len(self.queue) < self.max_queue:
            self.queue.append(item)
            return Admission.QUEUED
        self.rejected += 1
        return Admission.REJECTED

    def release(self) -> Queueable | None:
        """Free one slot; returns the next queued item, which now owns the slot (caller starts it)."""
        while self.queue:
            item = self.queue.popleft()
            if item.queued:  # skip items that expired or whose client went away
                return item
        self.active -= 1
        return None

    def remove(self, item: Queueable) -> None:
        try:
            self.queue.remove(item)
        except ValueError:
            pass

    def expire(self, now: float) -> list[Queueable]:
        """Items whose queue deadline passed (caller answers 503)."""
        out = []
        while self.queue and self.queue[0].queue_deadline <= now:
            item = self.queue.popleft()
            if item.queued:
                self.timed_out += 1
                out.append(item)
        return out
