"""When each user sends its next task: think time in the closed model, a fixed schedule in the open one (`--rate`).

Open model, wrk2's way: the total rate R is split over the U users, so each user's tasks are due every
U/R seconds on a schedule fixed from the start (a random phase keeps users apart). A user still waiting
for a slow answer misses its slot; its next task starts late, and every request of that task is
charged the lag (`lag` in the request's context: latency is measured from the intended send time).
That is what a closed-loop generator hides (coordinated omission). The scenario's load factor scales R
over time (ramp, spike, capacity steps), computed from elapsed time alone, so workers agree.

And the budgets that keep journeys within the service's limits: wrong passwords, authenticator codes, and
the password recovery journey's own fixed low rate and its codes per account per hour.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable

import pyotp

THINK_SECONDS = (0.5, 1.5)   # closed model: a person between two page views (uniform)
RECOVERY_WINDOW = 3600.0     # the service counts recovery codes per address over the past hour
RECOVERY_MAX_PER_MINUTE = 60.0   # the recovery journey's highest rate: its 254 source addresses stay under 20/h each


class Pacing:
    """One user's pacing. `wait()` is Locust's wait_time; `lag()` goes into each request's context."""

    def __init__(self, users: int, rate_at: Callable[[float], float] | None, started: float) -> None:
        self.users, self.rate_at, self.started = max(1, users), rate_at, started
        self.slot: float | None = None     # the next task's intended start (open model, from the first wait)
        self.due: float | None = None      # the current task's
        self.task_lag: float | None = None

    def interval(self, elapsed: float) -> float:
        assert self.rate_at is not None
        return self.users / max(1e-6, self.rate_at(elapsed))

    def wait(self) -> float:
        """Seconds until this user's next task: its next slot (open), or a think time (closed)."""
        self.task_lag = None
        if self.rate_at is None:
            return random.uniform(*THINK_SECONDS)
        now = time.time()
        if self.slot is None:  # the schedule starts after on_start (the first sign-in is not a scheduled task)
            self.slot = now + random.uniform(0, self.interval(now - self.started))
        delay = self.slot - now
        self.due = self.slot
        self.slot += self.interval(self.slot - self.started)
        return max(0.0, delay)

    def lag(self) -> float | None:
        """How late the current task started against its slot, fixed at its first request (None: closed model,
        or on_start's requests before the schedule begins)."""
        if self.due is None:
            return None
        if self.task_lag is None:
            self.task_lag = max(0.0, time.time() - self.due)
        return self.task_lag


class WrongPasswordBudget:
    """Wrong passwords at a low rate that never trips the service's brute-force limits (docs/loadtests.md).

    The limits (loginsvc/conf.py defaults): 10 consecutive failures of one account from one address lock
    that pair; 50 failures from one address in 15 min slow that address; from 20 failures of one account
    in an hour its attempts from unknown sources are spaced out. So each wrong password goes to the next
    account and the next of SOURCES loopback source addresses in turn, and one process allows at most
    15 per account per hour and 40 per address per 15 minutes, divided by the number of processes."""

    SOURCES = tuple(f"127.0.0.{i}" for i in range(10, 42))   # 32 loopback addresses (all of 127/8 is local)
    PER_ACCOUNT_HOUR = 15
    PER_SOURCE_WINDOW = 40
    WINDOW = 900.0

    def __init__(self, accounts: list[str], processes: int) -> None:
        self.accounts = accounts
        per_account = 3600.0 / (self.PER_ACCOUNT_HOUR * max(1, len(accounts)))
        per_source = self.WINDOW / (self.PER_SOURCE_WINDOW * len(self.SOURCES))
        self.spacing = max(per_account, per_source) * max(1, processes)
        self.next_at = time.monotonic()   # one at once, then one per `spacing`
        self.turn = random.randrange(len(accounts) * len(self.SOURCES))

    def take(self) -> tuple[str, str] | None:
        """(account, source address) for one wrong password now, or None when the budget is spent."""
        now = time.monotonic()
        if now < self.next_at:
            return None
        self.next_at = now + self.spacing
        self.turn += 1
        return self.accounts[self.turn % len(self.accounts)], self.SOURCES[self.turn % len(self.SOURCES)]


class CodeSteps:
    """Which authenticator-app account may sign in now: a code works once per account per 30-s step (the
    service refuses a replay on every node, RFC 6238 §5.2), so no account is used twice in one step.

    Each generator process takes its own share of the accounts (every `share`-th from `index`: its worker
    index), so two processes never send the same account's code in one step; within a process, of the
    accounts not yet used in the current step, the least recently used. None when every one of them has
    been used in this step: the caller signs in another way rather than wait (waiting would charge the
    generator's limit to the next requests' latency)."""

    STEP_SECONDS = 30   # RFC 6238's default, what the service uses

    def __init__(self, accounts: list[str], index: int = 0, share: int = 1) -> None:
        self.accounts = accounts[index % max(1, share)::max(1, share)]
        self.last_step: dict[str, int] = {}

    def take(self, now: float | None = None) -> tuple[str, int] | None:
        """(account, the time step whose code to send), now reserved; or None when all are used this step."""
        step = int((time.time() if now is None else now) // self.STEP_SECONDS)
        free = [a for a in self.accounts if self.last_step.get(a, -1) < step]
        if not free:
            return None
        account = min(free, key=lambda a: self.last_step.get(a, -1))   # min() keeps the first of equals
        self.last_step[account] = step
        return account, step

    @classmethod
    def code(cls, secret: str, step: int) -> str:
        """The app's code of `step` (pyotp's defaults are the service's: SHA-1, 6 digits, 30 s)."""
        return pyotp.TOTP(secret, interval=cls.STEP_SECONDS).at(step * cls.STEP_SECONDS)


class RecoverySchedule:
    """One ask every `interval` seconds from a random phase; an ask that took longer than an interval is not
    followed by a burst of catching up (the mail delay is the figure, not this rate)."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self.next: float | None = None

    def wait(self, now: float | None = None) -> float:
        """Seconds until the next ask."""
        now = time.time() if now is None else now
        if self.next is None:
            self.next = now + random.uniform(0, self.interval)
        elif self.next < now - self.interval:
            self.next = now
        delay = self.next - now
        self.next += self.interval
        return max(0.0, delay)


class RecoveryAccounts:
    """Which account to ask a code for: of those with fewer than `limit` codes in the last hour, the least
    recently asked (never-asked ones first, in order); None when every one has had its `limit`."""

    def __init__(self, accounts: list[str], limit: int, history: Iterable[tuple[str, float]] = ()) -> None:
        self.accounts, self.limit = accounts, limit
        self.asked: dict[str, list[float]] = {account.lower(): [] for account in accounts}
        for address, when in history:   # earlier codes: the recovery mails to these addresses in the Maildir
            if address.lower() in self.asked:
                self.asked[address.lower()].append(when)

    def take(self, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        horizon = now - RECOVERY_WINDOW
        for times in self.asked.values():
            times[:] = [t for t in times if t > horizon]
        free = [a for a in self.accounts if len(self.asked[a.lower()]) < self.limit]
        if not free:
            return None
        account = min(free, key=lambda a: max(self.asked[a.lower()], default=float("-inf")))
        self.asked[account.lower()].append(now)
        return account
