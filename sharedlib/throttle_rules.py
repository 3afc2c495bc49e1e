"""Back-off rules: how many failures lock, for how long, how a count expires (the login service's counters, the router's sign-in throttle)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One counter's policy: an exponential lock from `threshold` on, and optionally a hard one.

    The lock lasts `base_seconds` at the threshold and doubles per further failure up to
    `max_seconds`. From `hard_threshold` on (0: never) it is `hard_seconds` instead: the
    account-wide step-up.
    """

    threshold: int
    base_seconds: int
    max_seconds: int
    window_seconds: int
    sliding: bool  # True: the window restarts at each failure; False: fixed from the first one.
    hard_threshold: int = 0
    hard_seconds: int = 0

    def lock_seconds(self, count: int) -> int:
        return self.lock(count)[0]

    def lock(self, count: int) -> tuple[int, int]:
        """(seconds, flag) for the `count`-th failure: flag 0 no lock, 1 a lock, 2 the hard limit
        reached (its lock set), 3 past it (the hard lock renewed)."""
        if self.hard_threshold and count >= self.hard_threshold:
            return self.hard_seconds, 2 if count == self.hard_threshold else 3
        over = count - self.threshold
        if over < 0:
            return 0, 0
        return int(min(self.max_seconds, self.base_seconds * 2 ** min(over, 30))), 1

    def script_args(self) -> list[int]:
        """The rule as the Redis script reads it (throttle._BEGIN_SCRIPT)."""
        return [self.window_seconds, self.threshold, self.base_seconds, self.max_seconds, int(self.sliding),
                self.hard_threshold, self.hard_seconds]


@dataclass(frozen=True)
class Counter:
    """One counter of one attempt: its scope name, its key, its rule.

    `soft`: the account-wide counter, whose lock only refuses unknown sources; `enforced` says
    whether it refuses this attempt. A successful attempt clears a soft lock it set itself.
    """

    scope: str
    key: str
    rule: Rule
    soft: bool = False
    enforced: bool = True
