"""Brute-force protection shared by every node: soft, exponential lockouts kept in Redis, else the database.

Four counters are kept for every attempt, a fifth during the step-up (docs/security.md, "Brute force"):
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
  failure), so at most `ACCOUNT_FAILURE_LIMIT` passwords from unknown sources are checked before
  the step-up (ASVS 2.2.1), and during it only the budget's:
- step-up budget, per account: during the step-up (not its delays), up to
  `ACCOUNT_STEP_UP_CHECKS` attempts per `ACCOUNT_WINDOW_SECONDS` (fixed window) from unknown
  sources still have their password checked (`step_up`), so that an account with a second factor
  signs in with it at once and its source becomes known. Every such attempt spends the budget,
  whether the account exists, has a second factor or not, and whatever the password: within it
  every one runs the hasher, beyond it every one is refused at once, so neither timing nor answer
  tells whether the account has a factor. Only the correct password of an account with a second
  factor gets anywhere (the code is due, authentication.py); every other checked attempt gets the
  refusal's answer and counts as a failure.
One more key counts every attempt on the account since its last successful sign-in, which the
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
from dataclasses import dataclass, replace

from django_redis import get_redis_connection
from redis.exceptions import RedisError

from loginsvc import conf
from loginsvc.accounts.throttle_db import DatabaseStore
from sharedlib.throttle_rules import Counter, Rule

__all__ = ["Attempt", "Counter", "DatabaseStore", "Rule", "begin", "client_network", "gave_password",
           "passkey_options_request", "recovery_request", "step_up", "step_up_check", "succeeded"]

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
    # Set when the account lock refused this attempt from an unknown source and the step-up budget
    # let it go on as if from a known one (`step_up`): that refusal, the answer unless a second
    # factor is due.
    step_up_refusal: Attempt | None = None


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


def begin(email: str, ip: str, known: bool = False, count: bool = True, outage_locks: bool = True) -> Attempt:
    """Check the locks and count this attempt as a failure, atomically; call before the password check.

    `known`: the attempt comes from a device or network this account has signed in from, so the
    account-wide lock does not apply to it. `count=False` when the same attempt is re-run as
    known after a first refusal, so that it is noted once for the "failed attempts" notice.
    `outage_locks=False`: while Redis answers, do not also read the locks kept on the database
    from an outage. For a sign-in's second step: its password step read them at most
    `MFA_PENDING_SECONDS` before, and the code guesses since are counted and locked in Redis.
    """
    counters, notice_key = counters_for(email, ip, known)
    allowed, wait, refused_by, flags, store = _check_and_count(counters, notice_key, int(count), outage_locks)
    locks = tuple((c.scope, flag) for c, flag in zip(counters, flags) if flag)
    return Attempt(counters, notice_key, store, allowed, wait, refused_by, locks)


def _check_and_count(counters: tuple[Counter, ...], notice_key: str, notice: int,
                     outage_locks: bool = True) -> tuple[bool, int, str, list[int], str]:
    """One atomic check-and-count on Redis, else on the database: (allowed, wait, refused_by,
    flags, store). The one path every counter takes, so none of them switches off with Redis."""
    try:
        allowed, wait, refused_by, flags = RedisStore().begin(counters, notice_key, notice)
        store = "redis"
        if allowed and outage_locks:
            # Locks set while Redis was unreachable still count once it is back.
            wait, refused_by = DatabaseStore().locked_for([c for c in counters if c.enforced])
            allowed = not wait
    except RedisError as exc:
        log.warning("throttle: redis unavailable, using the database", extra={"error": type(exc).__name__})
        allowed, wait, refused_by, flags = DatabaseStore().begin(counters, notice_key, notice)
        store = "database"
    return allowed, wait, refused_by, flags, store


def step_up_counter(email: str) -> Counter:
    """The account's step-up budget: `ACCOUNT_STEP_UP_CHECKS` checks, then a lock until the window
    ends. A fixed window (not sliding), so that spending it does not push its end further away."""
    window = conf.get("ACCOUNT_WINDOW_SECONDS")
    rule = Rule(conf.get("ACCOUNT_STEP_UP_CHECKS"), window, window, window, sliding=False)
    return Counter("step_up", "s:" + _digest(email), rule)


def step_up_check(email: str) -> bool:
    """Spend one of the account's step-up checks: False once this window's are all spent.

    The same atomic check-and-count as `begin` (the N-th check locks the budget for a window, so
    exactly N pass), so parallel attempts on any node cannot overdraw it. No notice is kept:
    the refused attempt was noted already.
    """
    counter = step_up_counter(email)
    return _check_and_count((counter,), counter.key, 0)[0]


def recovery_request(ip: str) -> int:
    """Count one request for a mailed recovery code from this client network: 0 when it may go on, else
    the seconds until it may (`RECOVERY_IP_REQUESTS` per hour, a fixed window). The account's own limit
    (codes mailed per hour) is kept with the codes (selfservice/recovery.py)."""
    return _per_network("recovery_ip", "r:", conf.get("RECOVERY_IP_REQUESTS"), 3600, ip)


def device_request(ip: str) -> int:
    """Count one device authorization (RFC 8628 §3.1) from this client network, as recovery_request does
    (`DEVICE_IP_REQUESTS` per hour): each keeps a grant waiting, and a flood of them would crowd the codes."""
    return _per_network("device_ip", "d:", conf.get("DEVICE_IP_REQUESTS"), 3600, ip)


def passkey_options_request(ip: str) -> int:
    """Count one passkey ceremony started from this client network, as recovery_request does
    (`PASSKEY_OPTIONS_IP_REQUESTS` per minute): each leaves a challenge row for two minutes, and anyone may
    start one (the login page does, for passkey autofill), so a flood would be a flood of database writes."""
    return _per_network("passkey_options_ip", "o:", conf.get("PASSKEY_OPTIONS_IP_REQUESTS"), 60, ip)


def _per_network(scope: str, prefix: str, limit: int, seconds: int, ip: str) -> int:
    """`limit` requests per fixed window of `seconds` from the network of `ip`: 0, or the seconds to wait."""
    rule = Rule(limit, seconds, seconds, seconds, sliding=False)
    counter = Counter(scope, prefix + _digest(client_network(ip)), rule)
    allowed, wait, _, _, _ = _check_and_count((counter,), counter.key, 0)
    return 0 if allowed else wait


def step_up(email: str, ip: str, refused: Attempt) -> Attempt:
    """The account lock `refused` an attempt from a source the account does not know: once past
    the failure limit (the step-up, not its delays), let it go on as if from a known source when
    the step-up budget allows, marked with that refusal.

    Such an attempt is counted like any other (pair, address and account; not noted twice), so a
    wrong password is a failure. Refused anyway when the budget is spent, or when the pair or
    address lock refuses it: then the answer is the original refusal, as before the budget.
    """
    if not _past_failure_limit(refused) or not step_up_check(email):
        return refused
    again = begin(email, ip, known=True, count=False)
    return replace(again, step_up_refusal=refused) if again.allowed else refused


def _past_failure_limit(refused: Attempt) -> bool:
    """Was the account lock that refused this the step-up itself, not one of the short delays
    before it? Its count has then reached `ACCOUNT_FAILURE_LIMIT` (the step-up's lock lasts as long
    as that count). The delays are not bypassed: they only make unknown sources wait a minute at
    most, and spending the budget on them would let guesses skip them."""
    account = next(c for c in refused.counters if c.soft)
    if refused.store == "redis":
        try:
            if int(RedisStore().client.get(PREFIX + "n:" + account.key) or 0) >= account.rule.hard_threshold:
                return True
        except RedisError:
            pass
    # Also a count kept on the database during a Redis outage, whose lock Redis-era attempts honour.
    return DatabaseStore().count(account.key) >= account.rule.hard_threshold


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
    _give_back(attempt, attempt.counters[1:])


def was_right(attempt: Attempt) -> None:
    """A right answer that signs nobody in (a device's user code typed at /device): the attempt given back to
    every counter. Not `succeeded`, which would also forget the failures before it: a guesser could then
    reset the pair's count with a code of their own between guesses."""
    _give_back(attempt, attempt.counters)


def _give_back(attempt: Attempt, counters: tuple[Counter, ...]) -> None:
    if attempt.store == "redis":
        try:
            RedisStore().client.eval(_GIVE_BACK_SCRIPT, len(counters), *(PREFIX + "n:" + c.key for c in counters))
            return
        except RedisError:
            pass
    DatabaseStore().give_back(counters)


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
