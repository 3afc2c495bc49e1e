"""The automation lease: exactly one router instance steps ramp plans and moves traffic proactively.

With Redis the lease is a key set with NX and a TTL, renewed by its holder (only while it still holds it,
checked and extended in one Lua call); a holder that dies loses it within the TTL and another router takes
over from the plan in the shared state. In quick mode (file state) it is an exclusive flock on a file
beside the state file: the kernel releases it when the holder's process ends.
"""
from __future__ import annotations

import fcntl
import os
from typing import Any, Protocol

LEASE_TTL_MS = 10_000
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


class Lease(Protocol):
    async def acquire(self) -> bool:
        """True while this process holds the lease (takes it when free, renews it when held)."""

    def release(self) -> None: ...


class FileLease:
    """flock(LOCK_EX | LOCK_NB) on `path`; held for the life of the open file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    async def acquire(self) -> bool:
        if self.fd is not None:
            return True
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class RedisLease:
    """SET key owner NX PX ttl, renewed by the owner; a Redis error counts as not holding it."""

    def __init__(self, redis: Any, key: str, owner: str, ttl_ms: int = LEASE_TTL_MS) -> None:
        self.redis = redis
        self.key = key
        self.owner = owner
        self.ttl_ms = ttl_ms
        self.held = False

    async def acquire(self) -> bool:
        try:
            self.held = bool(await self.redis.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms))
        except Exception:  # noqa: BLE001 - Redis unreachable: never drive a plan on a stale lease
            self.held = False
        return self.held

    def release(self) -> None:
        self.held = False   # the key expires by itself; deleting it here could race a new holder
