"""Brute-force protection shared by every node: soft, exponential lockouts kept in Redis, else the database.

Two counters are kept for each failed login:
- account+IP: `LOCKOUT_THRESHOLD` consecutive failures lock that pair for `LOCKOUT_BASE_SECONDS`,
  doubling with each further failure up to `LOCKOUT_MAX_SECONDS`; a success clears it. The count is
  forgotten `LOCKOUT_RESET_SECONDS` after the last failure. Locking the pair, not the account, keeps
  an attacker from locking a victim out from elsewhere.
- IP: `IP_FAILURE_THRESHOLD` failures on any accounts within `IP_WINDOW_SECONDS` lock the address
  the same way, which slows password spraying.
While locked, no password is checked at all (a correct one is refused too).
Redis is the primary store because every node sees it within a millisecond; when it cannot be
reached the same operations run on the `ThrottleState` table, so protection never switches off.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from django.db import transaction
from django.utils import timezone
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from loginsvc import conf

log = logging.getLogger(__name__)
PREFIX = "loginsvc:bf:"

_FAIL_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 or ARGV[5] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local lock = 0
local over = n - tonumber(ARGV[2])
if over >= 0 then
  if over > 30 then over = 30 end
  lock = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ over)
  redis.call('SET', KEYS[2], '1', 'EX', math.floor(lock))
end
return {n, math.floor(lock)}
"""


@dataclass(frozen=True)
class Rule:
    """One counter: how many failures lock, for how long, and how the count expires."""

    threshold: int
    base_seconds: int
    max_seconds: int
    window_seconds: int
    sliding: bool  # True: the window restarts at each failure; False: fixed from the first one.

    def lock_seconds(self, failures: int) -> int:
        over = failures - self.threshold
        if over < 0:
            return 0
        return int(min(self.max_seconds, self.base_seconds * 2 ** min(over, 30)))


class Store(Protocol):
    def fail(self, key: str, rule: Rule) -> int: ...
    def locked_for(self, keys: list[str]) -> int: ...
    def clear(self, key: str) -> None: ...


class RedisStore:
    """Atomic counters in Redis (one Lua call per failure, one pipeline per check)."""

    def __init__(self) -> None:
        self.client = get_redis_connection("default")
        self.script = self.client.register_script(_FAIL_SCRIPT)

    def fail(self, key: str, rule: Rule) -> int:
        keys = [PREFIX + "n:" + key, PREFIX + "l:" + key]
        args = [rule.window_seconds, rule.threshold, rule.base_seconds, rule.max_seconds, int(rule.sliding)]
        _count, lock = self.script(keys=keys, args=args)
        return int(lock)

    def locked_for(self, keys: list[str]) -> int:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(PREFIX + "l:" + key)
        remaining = [ms for ms in pipe.execute() if ms and ms > 0]
        return math.ceil(max(remaining) / 1000) if remaining else 0

    def clear(self, key: str) -> None:
        self.client.delete(PREFIX + "n:" + key, PREFIX + "l:" + key)


class DatabaseStore:
    """The same operations on the ThrottleState table, for when Redis is unreachable."""

    def fail(self, key: str, rule: Rule) -> int:
        from loginsvc.accounts.models import ThrottleState

        now = timezone.now()
        with transaction.atomic():
            row, created = ThrottleState.objects.select_for_update().get_or_create(
                key=key, defaults={"expires_at": now + timedelta(seconds=rule.window_seconds)}
            )
            if not created and row.expires_at <= now:
                row.failures, row.locked_until = 0, None
                row.expires_at = now + timedelta(seconds=rule.window_seconds)
            row.failures += 1
            if rule.sliding:
                row.expires_at = now + timedelta(seconds=rule.window_seconds)
            lock = rule.lock_seconds(row.failures)
            if lock:
                row.locked_until = now + timedelta(seconds=lock)
            row.save()
        return lock

    def locked_for(self, keys: list[str]) -> int:
        from loginsvc.accounts.models import ThrottleState

        now = timezone.now()
        until = ThrottleState.objects.filter(key__in=keys, locked_until__gt=now).values_list("locked_until", flat=True)
        return max((math.ceil((u - now).total_seconds()) for u in until), default=0)

    def clear(self, key: str) -> None:
        from loginsvc.accounts.models import ThrottleState

        ThrottleState.objects.filter(key=key).delete()


def _keys(email: str, ip: str) -> tuple[str, str]:
    # Hashed so that key length is bounded and no address sits in Redis in clear text.
    pair = hashlib.sha256(f"{email}\x00{ip}".encode()).hexdigest()[:40]
    return "p:" + pair, "i:" + hashlib.sha256(ip.encode()).hexdigest()[:40]


def _rules() -> tuple[Rule, Rule]:
    pair = Rule(
        conf.get("LOCKOUT_THRESHOLD"), conf.get("LOCKOUT_BASE_SECONDS"), conf.get("LOCKOUT_MAX_SECONDS"),
        conf.get("LOCKOUT_RESET_SECONDS"), sliding=True,
    )
    by_ip = Rule(
        conf.get("IP_FAILURE_THRESHOLD"), conf.get("LOCKOUT_BASE_SECONDS"), conf.get("LOCKOUT_MAX_SECONDS"),
        conf.get("IP_WINDOW_SECONDS"), sliding=False,
    )
    return pair, by_ip


def _run(operation: str, *args: object) -> int:
    """Run a store operation on Redis, falling back to the database when Redis errors."""
    try:
        return getattr(RedisStore(), operation)(*args) or 0
    except RedisError as exc:
        log.warning("throttle: redis unavailable, using the database", extra={"error": type(exc).__name__})
        return getattr(DatabaseStore(), operation)(*args) or 0


def retry_after(email: str, ip: str) -> int:
    """Seconds until this account may be tried again from this IP (0: not locked)."""
    return _run("locked_for", list(_keys(email, ip)))


def record_failure(email: str, ip: str) -> tuple[int, str | None]:
    """Count a failed login; returns the lock now in force (seconds) and which counter set it."""
    pair_key, ip_key = _keys(email, ip)
    pair_rule, ip_rule = _rules()
    pair_lock = _run("fail", pair_key, pair_rule)
    ip_lock = _run("fail", ip_key, ip_rule)
    if pair_lock >= ip_lock and pair_lock:
        return pair_lock, "account_ip"
    return (ip_lock, "ip") if ip_lock else (0, None)


def record_success(email: str, ip: str) -> None:
    """A correct password clears the account+IP counter (not the IP's: a sprayer may own one account)."""
    _run("clear", _keys(email, ip)[0])
