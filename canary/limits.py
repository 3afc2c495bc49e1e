"""Per-cluster concurrency limit with a bounded FIFO queue: beyond both, a fast 503 (never an unbounded queue)."""
from __future__ import annotations

from collections import deque
from typing import Any


class ConcurrencyLimit:
    """Admission control for one cluster. Queued items are started by release() or expired by the sweeper."""

    __slots__ = ("max_active", "max_queue", "active", "queue", "rejected", "timed_out")

    def __init__(self, max_active: int, max_queue: int) -> None:
        self.max_active = max_active
        self.max_queue = max_queue
        self.active = 0
        self.queue: deque[Any] = deque()
        self.rejected = 0
        self.timed_out = 0

    def admit(self, item: Any) -> int:
        """1 = run now, 0 = queued, -1 = rejected (send 503)."""
        if self.active < self.max_active:
            self.active += 1
            return 1
        if len(self.queue) < self.max_queue:
            self.queue.append(item)
            return 0
        self.rejected += 1
        return -1

    def release(self) -> Any | None:
        """Free one slot; returns the next queued item, which now owns the slot (caller starts it)."""
        while self.queue:
            item = self.queue.popleft()
            if item.queued:  # skip items that expired or whose client went away
                return item
        self.active -= 1
        return None

    def remove(self, item: Any) -> None:
        try:
            self.queue.remove(item)
        except ValueError:
            pass

    def expire(self, now: float) -> list[Any]:
        """Items whose queue deadline passed (caller answers 503)."""
        out = []
        while self.queue and self.queue[0].queue_deadline <= now:
            item = self.queue.popleft()
            if item.queued:
                self.timed_out += 1
                out.append(item)
        return out
