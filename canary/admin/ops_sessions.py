"""Which dashboard sessions are still live, shared by every router process on the same state (state.py).

A session cookie (dashboard.Sessions) names its session id and the *epoch* it was issued in. The record
kept here holds the current epoch and the ids of sessions ended before their expiry: a cookie is live only
while its epoch is the current one and its id was not ended. Signing out ends one id; "sign out all ops
sessions" starts a new epoch, which ends every cookie at once. Every check reads the shared record, so a
logout on one router refuses the copied cookie on the next request to any other.

The epoch is random, not a counter: a record that is lost or unreadable (Redis restarted without
persistence, a corrupt file) is replaced by a new epoch, which ends every session rather than bring an
ended one back.

- With Redis: the key `<state key>:ops-epoch`, and one key `<state key>:ops-ended:<id>` per ended session
  that expires with the session's cookie, so the set is bounded by the sessions signed in within 8 hours.
  Only GET and SET are sent (SET NX for the first epoch), the commands the router's Redis account has.
- With the state file: `<state file>.ops-sessions`, JSON, changed under an exclusive flock; ended ids
  past their expiry are dropped at each change, and beyond MAX_ENDED a new epoch ends every session.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from typing import Any, Callable, Protocol

from canary.discovery.state import FileStore, RedisStore

MAX_ENDED = 10_000


class StoreUnavailable(Exception):
    """The shared record cannot be read or written (Redis unreachable): no cookie session can be trusted."""


class SessionRecord(Protocol):
    async def epoch(self) -> str:
        """The current epoch (created on first use)."""

    async def live(self, sid: str, epoch: str) -> bool:
        """Whether session `sid`, issued in `epoch`, is still live."""

    async def end(self, sid: str, expires: int) -> None:
        """End one session (its id is kept until `expires`, its cookie's own end)."""

    async def end_all(self) -> None:
        """End every session: a new epoch."""


def new_epoch() -> str:
    return secrets.token_hex(8)


class RedisSessionRecord:
    """The record as Redis keys beside the state document."""

    def __init__(self, redis: Any, key: str) -> None:
        self.redis = redis
        self.epoch_key = key + ":ops-epoch"
        self.ended_prefix = key + ":ops-ended:"

    async def _call(self, *steps: Callable[[Any], Any]) -> list[Any]:
        """The steps' commands in one round trip (a plain pipeline, no MULTI); any Redis failure is
        StoreUnavailable."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for step in steps:
                    step(pipe)
                return list(await pipe.execute())
        except Exception as e:  # redis-py raises many kinds (connection, timeout, ACL): all mean "not known"
            raise StoreUnavailable(f"redis: {e}") from e

    async def epoch(self) -> str:
        raw, = await self._call(lambda p: p.get(self.epoch_key))
        if raw is None:   # first use, or Redis lost it: whoever sets it first wins, the others read theirs
            _, raw = await self._call(lambda p: p.set(self.epoch_key, new_epoch(), nx=True),
                                      lambda p: p.get(self.epoch_key))
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def live(self, sid: str, epoch: str) -> bool:
        current, ended = await self._call(lambda p: p.get(self.epoch_key), lambda p: p.get(self.ended_prefix + sid))
        if current is None:
            current = (await self.epoch()).encode()
        return ended is None and current == epoch.encode()

    async def end(self, sid: str, expires: int) -> None:
        await self._call(lambda p: p.set(self.ended_prefix + sid, "1", ex=max(1, expires - int(time.time()))))

    async def end_all(self) -> None:
        await self._call(lambda p: p.set(self.epoch_key, new_epoch()))


class FileSessionRecord:
    """The record as a JSON file beside the state file, read and changed under its flock."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _with(self, change: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Read the record under the lock, apply `change` (or repair a missing or corrupt record), write it."""
        try:
            return self._locked(change)
        except OSError as e:   # the folder or the disk: as unreachable as a Redis that is down
            raise StoreUnavailable(f"{self.path}: {e.strerror}") from e

    def _locked(self, change: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+", encoding="utf-8") as f:
            fcntl.flock(fd, fcntl.LOCK_EX)   # released when the file closes
            try:
                doc = json.loads(f.read() or "null")
            except ValueError:
                doc = None
            if not (isinstance(doc, dict) and isinstance(doc.get("epoch"), str) and isinstance(doc.get("ended"), dict)):
                doc = {"epoch": new_epoch(), "ended": {}}
                change = change or (lambda _: None)    # a new record is written even by a read
            if change is not None:
                change(doc)
                f.seek(0)
                f.truncate()
                json.dump(doc, f, sort_keys=True)
                f.flush()
                os.fsync(fd)
            return doc

    async def epoch(self) -> str:
        return str(self._with()["epoch"])

    async def live(self, sid: str, epoch: str) -> bool:
        doc = self._with()
        return doc["epoch"] == epoch and sid not in doc["ended"]

    async def end(self, sid: str, expires: int) -> None:
        def change(doc: dict[str, Any]) -> None:
            now = time.time()
            ended = {k: v for k, v in doc["ended"].items() if isinstance(v, (int, float)) and v > now}
            ended[sid] = expires
            if len(ended) > MAX_ENDED:   # bounded: past the cap every session ends instead
                doc["epoch"], ended = new_epoch(), {}
            doc["ended"] = ended
        self._with(change)

    async def end_all(self) -> None:
        self._with(lambda doc: doc.update(epoch=new_epoch(), ended={}))


def record_for(store: FileStore | RedisStore) -> SessionRecord:
    """The record beside the router's state: Redis keys next to its document, or a file next to its file."""
    if isinstance(store, RedisStore):
        return RedisSessionRecord(store.redis, store.key)
    return FileSessionRecord(store.path + ".ops-sessions")
