"""Shared routing state (roles, share, drains): a JSON file, or Redis with pub/sub for several routers."""
from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import tempfile
import time
from typing import Any, Callable

Update = Callable[[dict[str, Any] | None], dict[str, Any]]   # the stored document (None: none) -> the new one

log = logging.getLogger("canary.state")

CHANNEL = "canary:state:changed"
KEY = "canary:state"
UPDATE_ATTEMPTS = 50          # Redis: a change started again this often on conflicting writes, then it fails
CLAIM_SECONDS = 31 * 86400    # a claim outlives what it guards (a tester link lives at most 30 days)


def initial_state(stable: str, canary: str, percent: float) -> dict[str, Any]:
    return {"stable": stable, "canary": canary, "percent": percent, "drained": [], "version": 0,
            "updated_at": time.time()}


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    """What tells two versions of the state file apart: its inode changes with every write (a new file renamed
    over it), where two writes in a row can share an mtime."""
    return st.st_ino, st.st_mtime_ns, st.st_size


LOCK_SECONDS = 5.0     # how long a change waits for another process's lock on the state file before it fails


class FileStore:
    """Quick mode without Redis: atomic writes (tmp + rename); other instances poll the mtime (0.25 s)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None   # the file as last read or written (see _signature)
        self._task: asyncio.Task | None = None
        self._writing = asyncio.Lock()

    async def load(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                self._seen = _signature(os.fstat(f.fileno()))
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.error("state file %s unreadable (%s); starting from the configured defaults", self.path, e)
            return None
        return data if isinstance(data, dict) else None

    async def save(self, state: dict[str, Any]) -> None:
        d = os.path.dirname(self.path) or "."
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".canary-state.", dir=d)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(state, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._seen = _signature(os.stat(self.path))

    async def update(self, fn: Update) -> dict[str, Any]:
        """Read, change and write the document as one step for every process sharing the file (an exclusive
        flock on `<state>.lock` around the three): two changes never undo each other. Held for a read and a
        write (milliseconds); `fn` raising leaves the document as it was."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        async with self._writing:    # one change at a time in this process: a second flock here would wait on us
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                deadline = time.monotonic() + LOCK_SECONDS
                while True:          # never a blocking flock: the event loop keeps serving while another holds it
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"{self.path}.lock: held by another process for {LOCK_SECONDS:g} s")
                        await asyncio.sleep(0.005)
                new = fn(await self.load())     # load and save never suspend: the lock is held for a read and a write
                await self.save(new)
                return new
            finally:
                os.close(fd)             # releases the lock

    async def claim(self, name: str) -> bool:
        """True for the first caller only, across every process sharing the file (O_EXCL), e.g. the first
        opening of a one-time link; claims older than CLAIM_SECONDS are swept on the way."""
        folder = self.path + ".claims"
        os.makedirs(folder, mode=0o700, exist_ok=True)
        cutoff = time.time() - CLAIM_SECONDS
        with os.scandir(folder) as entries:
            for e in entries:
                try:
                    if e.stat().st_mtime < cutoff:
                        os.unlink(e.path)
                except OSError:
                    pass
        try:
            os.close(os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return False
        return True

    def watch(self, on_change: Callable[[dict[str, Any]], None],
              current: Callable[[], dict[str, Any]] | None = None) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll(on_change))

    async def _poll(self, on_change: Callable[[dict[str, Any]], None]) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                m = _signature(os.stat(self.path))
            except OSError:
                continue
            if m != self._seen:
                data = await self.load()
                if data is None:
                    continue
                try:
                    on_change(data)
                except Exception:  # noqa: BLE001 - a bad document must not stop watching for good ones
                    log.exception("state file %s holds an invalid state; keeping the current one", self.path)

    async def close(self) -> None:
        if self._task:
            self._task.cancel()


class RedisStore:
    """State document in one key; every change is published so all instances apply it within ~1 ms.
    A periodic reload (2 s) covers missed messages after a Redis reconnect."""

    def __init__(self, url: str, prefix: str = "") -> None:
        import redis.asyncio as aioredis
        self.redis = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.key = prefix + KEY
        self.channel = prefix + CHANNEL
        self._task: asyncio.Task | None = None
        self._version = -1

    async def load(self) -> dict[str, Any] | None:
        raw = await self.redis.get(self.key)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def save(self, state: dict[str, Any]) -> None:
        raw = json.dumps(state, sort_keys=True)
        await self.redis.set(self.key, raw)
        await self.redis.publish(self.channel, raw)

    async def update(self, fn: Update) -> dict[str, Any]:
        """Read, change and write the document as one step (WATCH/MULTI/EXEC: a change made by another router
        in between makes this one start again from the new document), then publish it."""
        from redis.exceptions import WatchError
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(UPDATE_ATTEMPTS):
                try:
                    await pipe.watch(self.key)
                    raw = await pipe.get(self.key)
                    try:
                        current = json.loads(raw) if raw is not None else None
                    except ValueError:
                        current = None
                    new = fn(current if isinstance(current, dict) else None)
                    data = json.dumps(new, sort_keys=True)
                    pipe.multi()
                    pipe.set(self.key, data)
                    pipe.publish(self.channel, data)
                    await pipe.execute()
                    return new
                except WatchError as e:
                    # redis-py also reports a lost connection while watching as a WatchError: then the write may
                    # have happened, so it is not run again (the caller gets the error; the state is re-read)
                    if "Watched variable changed" not in str(e):
                        raise
        raise RuntimeError(f"shared state: {UPDATE_ATTEMPTS} writes in a row lost to other routers' changes")

    async def claim(self, name: str) -> bool:
        """True for the first caller only, across every router sharing the Redis (SET NX)."""
        return bool(await self.redis.set(f"{self.key}:claim:{name}", b"1", nx=True, ex=CLAIM_SECONDS))

    async def init(self, state: dict[str, Any]) -> dict[str, Any]:
        """Set the initial document only if no instance did yet (SET NX); return the winning document."""
        await self.redis.set(self.key, json.dumps(state, sort_keys=True), nx=True)
        return await self.load() or state

    def watch(self, on_change: Callable[[dict[str, Any]], None],
              current: Callable[[], dict[str, Any]] | None = None) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen(on_change, current))

    async def _reload(self, on_change: Callable[[dict[str, Any]], None],
                      current: Callable[[], dict[str, Any]] | None) -> None:
        """Apply the stored document. If Redis came back empty (restarted without persistence), put back the
        state this instance still routes by, so a router started later does not fall back to defaults."""
        data = await self.load()
        if data is None and current is not None:
            data = await self.init(current())
        if data is not None:
            on_change(data)

    async def _listen(self, on_change: Callable[[dict[str, Any]], None],
                      current: Callable[[], dict[str, Any]] | None) -> None:
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                await self._reload(on_change, current)   # catch up on anything missed while unsubscribed
                last_reload = time.monotonic()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        try:
                            on_change(json.loads(msg["data"]))
                        except ValueError:
                            pass
                    if time.monotonic() - last_reload > 2.0:
                        last_reload = time.monotonic()
                        await self._reload(on_change, current)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis down: keep routing with the last known state, retry
                log.error("redis state watch failed: %s; retrying in 1 s", e)
                await asyncio.sleep(1.0)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        try:
            await self.redis.aclose()
        except Exception:
            pass
