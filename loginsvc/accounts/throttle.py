"""Brute-force protection shared by every node: soft, exponential lockouts kept in Redis, else the database.

Four counters are kept for every attempt (docs/security.md, "Brute force"):
- account+network: the `LOCKOUT_THRESHOLD`-th consecutive failed attempt locks that pair for
  `LOCKOUT_BASE_SECONDS`, doubling with each further failure up to `LOCKOUT_MAX_SECONDS`; a
  success clears it. The count is forgotten `LOCKOUT_RESET_SECONDS` after the last failure.
  Locking the pair, not the account, keeps an attacker from locking a victim out from elsewhere.
- network: `IP_FAILURE_THRESHOLD` failures on any accounts within `IP_WINDOW_SECONDS` lock the
  address the same way, which slows password spraying. IPv6 clients are counted per /64
  (configurable): one host usually owns a whole /64.
- wide IPv6 network (/56 by default): the same, with `IPV6_WIDE_FAILURE_THRESHOLD`, because one
  customer usually holds a /56 or /48 and can rotate through its /64s.
- account, across all addresses: *soft*. It is enforced only against sources the account has not
  signed in from (known_sources.py), so an attacker cannot lock the real user out. From
  `ACCOUNT_DELAY_THRESHOLD` failures on, each failure makes the account's next attempt from an
  unknown source wait (1 s doubling to 60 s: 429 + Retry-After, no thread is held); at
  `ACCOUNT_FAILURE_LIMIT` the step-up starts: unknown sources are refused, correct password or
  not, for `ACCOUNT_WINDOW_SECONDS`. The count slides (it is forgotten that long after the last
  failure), so at most `ACCOUNT_FAILURE_LIMIT` passwords from unknown sources are checked in
  any hour (ASVS 2.2.1).
A fifth key counts every attempt on the account since its last successful sign-in, which the
user is told at the next one.

An attempt is counted *before* its password is checked, in the same atomic step that checks
the locks (`begin`). Counting afterwards would let every request already in flight pass the
check: 25 parallel guesses would all be tried against a limit of 10. A success then clears
the pair counter and takes its count back from the others.

Redis is the primary store because every node sees it within a millisecond. When it cannot be
reached the attempt runs on the `ThrottleState` table instead (throttle_db.py), so protection
never switches off; locks set there are also honoured after Redis is back.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
from dataclasses import dataclass

from django_redis import get_redis_connection
from redis.exceptions import RedisError

from loginsvc import conf
from loginsvc.accounts.throttle_db import DatabaseStore
from loginsvc.accounts.throttle_rules import Counter, Rule

__all__ = ["Attempt", "Counter", "DatabaseStore", "Rule", "begin", "client_network", "gave_password", "succeeded"]

log = logging.getLogger(__name__)
PREFIX = "loginsvc:bf:"

# KEYS: count and lock key of each counter, then the notice counter.
# ARGV: notice increment, notice TTL, then per counter: window, threshold, base, max, sliding,
#       hard threshold, hard seconds, enforced (1: its lock refuses this attempt).
# Returns {0, wait ms, index of the refusing counter} or {1, 0, 0, flag per counter}, where a
# flag is 0 (no lock set), 1 (this attempt set a lock), 2 (it reached the counter's hard limit
# and set its lock) or 3 (it renewed the hard lock: past the limit, from a known source).
_BEGIN_SCRIPT = """
local counters = (#KEYS - 1) / 2
local notice = KEYS[#KEYS]
if tonumber(ARGV[1]) > 0 then
  redis.call('INCRBY', notice, ARGV[1])
  redis.call('EXPIRE', notice, ARGV[2])
end
local wait, reason = 0, 0
for i = 1, counters do
  if ARGV[2 + i * 8] == '1' then
    local left = redis.call('PTTL', KEYS[2 * i])
    if left > wait then wait, reason = left, i end
  end
end
if wait > 0 then return {0, wait, reason} end
local result = {1, 0, 0}
for i = 1, counters do
  local a = 2 + (i - 1) * 8
  local n = redis.call('INCR', KEYS[2 * i - 1])
  if n == 1 or ARGV[a + 5] == '1' then redis.call('EXPIRE', KEYS[2 * i - 1], ARGV[a + 1]) end
  local hard_at, lock, flag = tonumber(ARGV[a + 6]), 0, 0
  if hard_at > 0 and n >= hard_at then
    lock, flag = tonumber(ARGV[a + 7]), (n == hard_at) and 2 or 3
  elseif n >= tonumber(ARGV[a + 2]) then
    local over = math.min(n - tonumber(ARGV[a + 2]), 30)
    lock, flag = math.floor(math.min(tonumber(ARGV[a + 4]), tonumber(ARGV[a + 3]) * 2 ^ over)), 1
  end
  if lock > 0 then redis.call('SET', KEYS[2 * i], '1', 'EX', lock) end
  result[#result + 1] = flag
end
return result
"""
# KEYS: keys to delete (ARGV[1] of them), then counts to give one back to, then the notice counter.
# Returns the notice count, which is deleted.
_SUCCESS_SCRIPT = """
local delete = tonumber(ARGV[1])
for i = 1, delete do redis.call('DEL', KEYS[i]) end
for i = delete + 1, #KEYS - 1 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
local notice = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
redis.call('DEL', KEYS[#KEYS])
return notice
"""


@dataclass(frozen=True)
class Attempt:
    """The outcome of `begin`: may the password be checked, what refused it, what it locked."""

    counters: tuple[Counter, ...]
    notice_key: str
    store: str  # "redis" or "database": the rest of the attempt uses the same one
    allowed: bool
    retry_after: int = 0
    refused_by: str = ""  # the scope of the lock that refused it, when not allowed
    locks: tuple[tuple[str, int], ...] = ()  # (scope, flag) of each lock this attempt set


def client_network(ip: str, prefix_length: int | None = None) -> str:
    """The unit counted per client: the IPv4 address, or the IPv6 prefix (a /64 by default)."""
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        length = conf.get("IPV6_PREFIX_LENGTH") if prefix_length is None else prefix_length
        return str(ipaddress.ip_network(f"{address}/{length}", strict=False))
    return str(address)


def _digest(*parts: str) -> str:
    # Hashed so that key length is bounded and no address sits in Redis in clear text.
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:40]


def counters_for(email: str, ip: str, known: bool) -> tuple[tuple[Counter, ...], str]:
    """Every counter one attempt touches (the account's enforced unless `known`) and the notice key."""
    base, cap = conf.get("LOCKOUT_BASE_SECONDS"), conf.get("LOCKOUT_MAX_SECONDS")
    network = client_network(ip)
    counters = [
        Counter("account_ip", "p:" + _digest(email, network),
                Rule(conf.get("LOCKOUT_THRESHOLD"), base, cap, conf.get("LOCKOUT_RESET_SECONDS"), True)),
        Counter("ip", "i:" + _digest(network),
                Rule(conf.get("IP_FAILURE_THRESHOLD"), base, cap, conf.get("IP_WINDOW_SECONDS"), False)),
    ]
    wide = client_network(ip, conf.get("IPV6_WIDE_PREFIX_LENGTH"))
    if wide != network:  # IPv6 only: IPv4 (and IPv4-mapped) addresses are counted one by one
        counters.append(Counter("ipv6_wide", "w:" + _digest(wide), Rule(
            conf.get("IPV6_WIDE_FAILURE_THRESHOLD"), base, cap, conf.get("IP_WINDOW_SECONDS"), False)))
    window = conf.get("ACCOUNT_WINDOW_SECONDS")
    account = Rule(conf.get("ACCOUNT_DELAY_THRESHOLD"), conf.get("ACCOUNT_DELAY_BASE_SECONDS"),
                   conf.get("ACCOUNT_DELAY_MAX_SECONDS"), window, True,
                   hard_threshold=conf.get("ACCOUNT_FAILURE_LIMIT"), hard_seconds=window)
    account_key = _digest(email)
    counters.append(Counter("account", "a:" + account_key, account, soft=True, enforced=not known))
    return tuple(counters), "f:" + account_key


class RedisStore:
    """Atomic check-and-count in Redis: one Lua call per attempt."""

    def __init__(self) -> None:
        self.client = get_redis_connection("default")

    def begin(self, counters: tuple[Counter, ...], notice_key: str, notice: int) -> tuple[bool, int, str, list[int]]:
        keys: list[str] = []
        args: list[int] = [notice, conf.get("LOGIN_NOTICE_SECONDS")]
        for counter in counters:
            keys += [PREFIX + "n:" + counter.key, PREFIX + "l:" + counter.key]
            args += counter.rule.script_args() + [int(counter.enforced)]
        allowed, wait, reason, *flags = self.client.eval(_BEGIN_SCRIPT, len(keys) + 1, *keys, PREFIX + notice_key, *args)
        if not allowed:
            return False, math.ceil(int(wait) / 1000), counters[int(reason) - 1].scope, []
        return True, 0, "", [int(flag) for flag in flags]

    def succeed(self, attempt: Attempt) -> int:
        pair = attempt.counters[0]
        delete = [PREFIX + "n:" + pair.key, PREFIX + "l:" + pair.key]
        delete += [PREFIX + "l:" + c.key for c in own_soft_locks(attempt)]
        give_back = [PREFIX + "n:" + c.key for c in attempt.counters[1:]]
        keys = delete + give_back + [PREFIX + attempt.notice_key]
        return int(self.client.eval(_SUCCESS_SCRIPT, len(keys), *keys, len(delete)))


def begin(email: str, ip: str, known: bool = False, count: bool = True) -> Attempt:
    """Check the locks and count this attempt as a failure, atomically; call before the password check.

    `known`: the attempt comes from a device or network this account has signed in from, so the
    account-wide lock does not apply to it. `count=False` when the same attempt is re-run as
    known after a first refusal, so that it is noted once for the "failed attempts" notice.
    """
    counters, notice_key = counters_for(email, ip, known)
    notice = int(count)
    try:
        allowed, wait, refused_by, flags = RedisStore().begin(counters, notice_key, notice)
        store = "redis"
        if allowed:
            # Locks set while Redis was unreachable still count once it is back.
            wait, refused_by = DatabaseStore().locked_for([c for c in counters if c.enforced])
            allowed = not wait
    except RedisError as exc:
        log.warning("throttle: redis unavailable, using the database", extra={"error": type(exc).__name__})
        allowed, wait, refused_by, flags = DatabaseStore().begin(counters, notice_key, notice)
        store = "database"
    locks = tuple((c.scope, flag) for c, flag in zip(counters, flags) if flag)
    return Attempt(counters, notice_key, store, allowed, wait, refused_by, locks)


def own_soft_locks(attempt: Attempt) -> list[Counter]:
    """Soft counters whose lock this (now successful) attempt set: the real user's own sign-in
    must not leave the account delayed or stepped up for others. A step-up it only renewed
    (flag 3) was on already, and stays."""
    set_here = {scope for scope, flag in attempt.locks if flag != 3}
    return [c for c in attempt.counters if c.soft and c.scope in set_here]


# KEYS: counts to give one back to.
_GIVE_BACK_SCRIPT = """
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 0
"""


def gave_password(attempt: Attempt) -> None:
    """The password was right but a second factor is still due: give the attempt back to the
    address's and the account's counters, and keep it on the pair. So a user who signs in with a
    second factor is not counted as failing, while someone who has the password but not the
    factor still locks the pair: each password and each wrong code count there, until the whole
    sign-in succeeds (succeeded) or the pair locks."""
    others = attempt.counters[1:]
    if attempt.store == "redis":
        try:
            RedisStore().client.eval(_GIVE_BACK_SCRIPT, len(others), *(PREFIX + "n:" + c.key for c in others))
            return
        except RedisError:
            pass
    DatabaseStore().give_back(others)


def succeeded(attempt: Attempt) -> int:
    """The password was right: clear the pair, give the attempt back to the other counters.

    Returns how many attempts on the account failed (or were refused) since its last sign-in.
    """
    failed = None
    if attempt.store == "redis":
        try:
            # Plus what was noted on the database during a Redis outage.
            failed = RedisStore().succeed(attempt) + DatabaseStore().take_notice(attempt.notice_key)
        except RedisError:
            pass
    if failed is None:
        failed = DatabaseStore().succeed(attempt.counters, own_soft_locks(attempt), attempt.notice_key)
    return max(0, failed - 1)  # the notice counted this attempt too
