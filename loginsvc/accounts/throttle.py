"""Brute-force protection shared by every node: soft, exponential lockouts kept in Redis, else the database.

Two counters are kept:
- account+IP: the `LOCKOUT_THRESHOLD`-th consecutive failed attempt locks that pair for
  `LOCKOUT_BASE_SECONDS`, doubling with each further failure up to `LOCKOUT_MAX_SECONDS`; a
  success clears it. The count is forgotten `LOCKOUT_RESET_SECONDS` after the last failure.
  Locking the pair, not the account, keeps an attacker from locking a victim out from elsewhere.
- IP: `IP_FAILURE_THRESHOLD` failures on any accounts within `IP_WINDOW_SECONDS` lock the address
  the same way, which slows password spraying. IPv6 clients are counted per /64 (configurable):
  one host usually owns a whole /64.

An attempt is counted *before* its password is checked, in the same atomic step that checks
the locks (`begin`). Counting afterwards would let every request already in flight pass the
check: 25 parallel guesses would all be tried against a limit of 10. A success then clears
the pair counter and takes its count back from the IP counter.

Redis is the primary store because every node sees it within a millisecond. When it cannot be
reached the attempt runs on the `ThrottleState` table instead, so protection never switches
off; locks set there are also honoured after Redis is back.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import random
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from loginsvc import conf

log = logging.getLogger(__name__)
PREFIX = "loginsvc:bf:"

# KEYS: pair count, pair lock, ip count, ip lock.
# ARGV: pair window, pair threshold, ip window, ip threshold, base seconds, max seconds.
# Returns {allowed, wait ms or lock flags}: flags bit 1 = this attempt locked the pair, 2 = the IP.
_BEGIN_SCRIPT = """
local wait = math.max(redis.call('PTTL', KEYS[2]), redis.call('PTTL', KEYS[4]), 0)
if wait > 0 then return {0, wait} end
local function bump(count_key, lock_key, window, threshold, sliding)
  local n = redis.call('INCR', count_key)
  if n == 1 or sliding then redis.call('EXPIRE', count_key, window) end
  local over = n - threshold
  if over < 0 then return 0 end
  if over > 30 then over = 30 end
  redis.call('SET', lock_key, '1', 'EX', math.floor(math.min(tonumber(ARGV[6]), tonumber(ARGV[5]) * 2 ^ over)))
  return 1
end
local flags = bump(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), true)
flags = flags + 2 * bump(KEYS[3], KEYS[4], ARGV[3], tonumber(ARGV[4]), false)
return {1, flags}
"""
# KEYS: pair count, pair lock, ip count. Clears the pair; gives the attempt back to the IP.
_SUCCESS_SCRIPT = """
redis.call('DEL', KEYS[1], KEYS[2])
if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then redis.call('DECR', KEYS[3]) end
return 1
"""


@dataclass(frozen=True)
class Rule:
    """One counter: how many failures lock, for how long, and how the count expires."""

    threshold: int
    base_seconds: int
    max_seconds: int
    window_seconds: int
    sliding: bool  # True: the window restarts at each failure; False: fixed from the first one.

    def lock_seconds(self, count: int) -> int:
        over = count - self.threshold
        if over < 0:
            return 0
        return int(min(self.max_seconds, self.base_seconds * 2 ** min(over, 30)))


@dataclass(frozen=True)
class Attempt:
    """The outcome of `begin`: may the password be checked, and what this attempt locked."""

    pair_key: str
    ip_key: str
    store: str  # "redis" or "database": the rest of the attempt uses the same one
    allowed: bool
    retry_after: int = 0
    locked_scopes: tuple[str, ...] = ()


def client_network(ip: str) -> str:
    """The unit counted per client: the IPv4 address, or the IPv6 prefix (a /64 by default)."""
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{conf.get('IPV6_PREFIX_LENGTH')}", strict=False))
    return str(address)


def _keys(email: str, ip: str) -> tuple[str, str]:
    # Hashed so that key length is bounded and no address sits in Redis in clear text.
    network = client_network(ip)
    pair = hashlib.sha256(f"{email}\x00{network}".encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return "p:" + pair, "i:" + hashlib.sha256(network.encode()).hexdigest()[:40]


def _rules() -> tuple[Rule, Rule]:
    base, cap = conf.get("LOCKOUT_BASE_SECONDS"), conf.get("LOCKOUT_MAX_SECONDS")
    pair = Rule(conf.get("LOCKOUT_THRESHOLD"), base, cap, conf.get("LOCKOUT_RESET_SECONDS"), sliding=True)
    by_ip = Rule(conf.get("IP_FAILURE_THRESHOLD"), base, cap, conf.get("IP_WINDOW_SECONDS"), sliding=False)
    return pair, by_ip


def _scopes(flags: int) -> tuple[str, ...]:
    return tuple(name for bit, name in ((1, "account_ip"), (2, "ip")) if flags & bit)


class RedisStore:
    """Atomic check-and-count in Redis: one Lua call per attempt."""

    def __init__(self) -> None:
        self.client = get_redis_connection("default")

    def begin(self, pair_key: str, ip_key: str, pair: Rule, by_ip: Rule) -> tuple[bool, int, int]:
        keys = [PREFIX + "n:" + pair_key, PREFIX + "l:" + pair_key, PREFIX + "n:" + ip_key, PREFIX + "l:" + ip_key]
        args = [pair.window_seconds, pair.threshold, by_ip.window_seconds, by_ip.threshold,
                pair.base_seconds, pair.max_seconds]
        allowed, value = self.client.eval(_BEGIN_SCRIPT, len(keys), *keys, *args)
        if not allowed:
            return False, math.ceil(int(value) / 1000), 0
        return True, 0, int(value)

    def succeed(self, pair_key: str, ip_key: str) -> None:
        keys = [PREFIX + "n:" + pair_key, PREFIX + "l:" + pair_key, PREFIX + "n:" + ip_key]
        self.client.eval(_SUCCESS_SCRIPT, len(keys), *keys)


class DatabaseStore:
    """The same operations on the ThrottleState table (row locks), for when Redis is unreachable."""

    def locked_for(self, keys: list[str]) -> int:
        from loginsvc.accounts.models import ThrottleState

        now = timezone.now()
        until = ThrottleState.objects.filter(key__in=keys, locked_until__gt=now).values_list("locked_until", flat=True)
        return max((math.ceil((u - now).total_seconds()) for u in until), default=0)

    def _bump(self, key: str, rule: Rule, now) -> bool:  # noqa: ANN001 - a datetime
        from loginsvc.accounts.models import ThrottleState

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
        return bool(lock)

    def begin(self, pair_key: str, ip_key: str, pair: Rule, by_ip: Rule) -> tuple[bool, int, int]:
        now = timezone.now()
        with transaction.atomic():
            wait = self.locked_for([pair_key, ip_key])
            if wait:
                return False, wait, 0
            flags = int(self._bump(pair_key, pair, now)) + 2 * int(self._bump(ip_key, by_ip, now))
        if random.random() < 0.01:
            self.purge(now)
        return True, 0, flags

    def succeed(self, pair_key: str, ip_key: str) -> None:
        from django.db.models import F

        from loginsvc.accounts.models import ThrottleState

        ThrottleState.objects.filter(key=pair_key).delete()
        ThrottleState.objects.filter(key=ip_key, failures__gt=0).update(failures=F("failures") - 1)

    def purge(self, now) -> int:  # noqa: ANN001 - a datetime
        """Delete rows whose window and lock are both over, so an outage leaves no lasting table growth."""
        from loginsvc.accounts.models import ThrottleState

        ended = Q(expires_at__lte=now) & (Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        return ThrottleState.objects.filter(ended).delete()[0]


def begin(email: str, ip: str) -> Attempt:
    """Check the locks and count this attempt as a failure, atomically; call before the password check."""
    pair_key, ip_key = _keys(email, ip)
    pair, by_ip = _rules()
    try:
        allowed, wait, flags = RedisStore().begin(pair_key, ip_key, pair, by_ip)
        store = "redis"
        if allowed:
            # Locks set while Redis was unreachable still count once it is back.
            wait = DatabaseStore().locked_for([pair_key, ip_key])
            allowed = not wait
    except RedisError as exc:
        log.warning("throttle: redis unavailable, using the database", extra={"error": type(exc).__name__})
        allowed, wait, flags = DatabaseStore().begin(pair_key, ip_key, pair, by_ip)
        store = "database"
    return Attempt(pair_key, ip_key, store, allowed, wait, _scopes(flags))


def succeeded(attempt: Attempt) -> None:
    """The password was right: clear the pair counter and give the attempt back to the IP counter."""
    if attempt.store == "redis":
        try:
            RedisStore().succeed(attempt.pair_key, attempt.ip_key)
            return
        except RedisError:
            pass
    DatabaseStore().succeed(attempt.pair_key, attempt.ip_key)
