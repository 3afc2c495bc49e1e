"""The alert outbox: every alert kept on disk with its delivery state per pipeline until each pipeline confirms it.

Why an outbox: the seeds' SMS gateway throttled and discarded alerts during a cascade, and the NOC
was never told. Here an alert is written (and fsynced) before any delivery is tried; a delivery is
done only when its pipeline said so; a router restart, or an outage of every pipeline, loses
nothing: whatever is still owed is sent once a pipeline is back. Every change is a read-modify-write
under an exclusive lock (fcntl.flock), and a delivery is claimed in the file before it is tried, so
two routers sharing the state folder deliver each alert once, not twice. Routers on different machines
share Redis instead (`RedisOutbox`: the same document in one key, changed under a Redis lock), as they
share the routing state.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

KEEP_DELIVERED = 200          # delivered alerts kept for `canary alerts` (the journal keeps everything)
CLAIM_SECONDS = 30.0          # a claimed delivery not reported back by then (its router died) is retried
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
RETRY_AFTER_CAP = 3600.0


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before the next try: exponential from 1 s, capped at 5 min, with jitter (half to all of it),
    so a pipeline that comes back is not hit by every router's retries in the same second."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return delay * (0.5 + 0.5 * rng())


class Outbox:
    """alerts.json in the state folder: {"alerts": [alert, ...]}, each alert with `deliveries`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "outbox.json"
        self.lock_path = folder / ".outbox.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The outbox's content for a read-modify-write; written back (atomically) when the block ends."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                self._write(data)

    def _read(self) -> dict[str, Any]:
        """The document, or an empty one; a damaged file is moved aside for a human, never overwritten."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"alerts": []}
        except (OSError, ValueError):
            os.replace(self.path, self.path.with_suffix(f".damaged-{int(time.time())}"))
            return {"alerts": []}
        return data if isinstance(data, dict) and isinstance(data.get("alerts"), list) else {"alerts": []}

    def _write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".outbox.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def add(self, alert: dict[str, Any], pipelines: list[str]) -> bool:
        """Keep `alert` owed to every pipeline; False when an alert with its id is already in (another router's)."""
        with self.locked() as data:
            if any(a["id"] == alert["id"] for a in data["alerts"]):
                return False
            alert["deliveries"] = {name: {"state": "pending", "attempts": 0, "next_at": 0.0, "error": ""}
                                   for name in pipelines}
            data["alerts"].append(alert)
            _trim(data)
            return True

    def claim(self, now: float, usable: Callable[[str], bool], owner: str) -> list[tuple[dict[str, Any], str]]:
        """Deliveries due now on pipelines that may be tried (breaker closed), each marked as being tried by
        `owner` until CLAIM_SECONDS from now."""
        claimed = []
        with self.locked() as data:
            for alert in data["alerts"]:
                for name, delivery in alert["deliveries"].items():
                    if delivery["state"] == "claimed" and delivery.get("claimed_until", 0) < now:
                        delivery["state"] = "pending"          # its router died mid-delivery: try again
                    if delivery["state"] == "pending" and delivery["next_at"] <= now and usable(name):
                        delivery.update(state="claimed", claimed_until=now + CLAIM_SECONDS, owner=owner)
                        claimed.append((json.loads(json.dumps(alert)), name))
        return claimed

    def report(self, alert_id: str, pipeline: str, ok: bool, error: str = "", retry_after: float | None = None,
               now: float | None = None) -> None:
        """The result of one delivery: done, or pending again after a back-off (or the receiver's Retry-After)."""
        now = time.time() if now is None else now
        with self.locked() as data:
            for alert in data["alerts"]:
                if alert["id"] != alert_id or pipeline not in alert["deliveries"]:
                    continue
                delivery = alert["deliveries"][pipeline]
                delivery["attempts"] += 1
                delivery.pop("claimed_until", None)
                delivery.pop("owner", None)
                if ok:
                    delivery.update(state="delivered", delivered_at=now, error="")
                else:
                    wait = min(RETRY_AFTER_CAP, retry_after) if retry_after is not None else backoff(delivery["attempts"])
                    delivery.update(state="pending", next_at=now + wait, error=error[:300])

    def rename_pipelines(self, rename: Callable[[str], tuple[str, bool]], scrub: Callable[[str], str]) -> int:
        """Carry the outbox over to new pipeline names (alerting.py says why): `rename(name)` gives each
        delivery's new name and whether its error must be hidden; a delivery already done under either name
        wins over one still owed, so nothing is sent twice and nothing owed is dropped; every alert text and
        error goes through `scrub`. Written back only if something changed. Returns the deliveries renamed."""
        moved = 0
        with self.locked() as data:
            for alert in data["alerts"]:
                deliveries: dict[str, Any] = {}
                for name, delivery in alert["deliveries"].items():
                    new, hide = rename(name)
                    moved += new != name
                    delivery["error"] = "" if hide else scrub(delivery.get("error", ""))
                    if new not in deliveries or delivery["state"] == "delivered":
                        deliveries[new] = delivery
                alert["deliveries"] = deliveries
                alert["text"] = scrub(alert["text"])
                for event in alert.get("events", []):
                    event["text"] = scrub(event["text"])
        return moved

    def snapshot(self) -> list[dict[str, Any]]:
        with self.locked() as data:
            return json.loads(json.dumps(data["alerts"]))


class RedisOutbox(Outbox):
    """The outbox document in one Redis key, each read-modify-write under redis-py's lock (SET NX PX with a
    token, released by a Lua compare): routers on different machines that share Redis deliver each alert once.
    How durable it is depends on the Redis server's persistence (AOF for production, docs/router.md)."""

    LOCK_SECONDS = 10.0

    def __init__(self, url: str, key: str, folder: Path) -> None:
        import redis
        super().__init__(folder)
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.key = key

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        with self.client.lock(self.key + ":lock", timeout=self.LOCK_SECONDS, blocking_timeout=self.LOCK_SECONDS):
            raw = self.client.get(self.key)
            try:
                data = json.loads(raw) if raw else {"alerts": []}
            except ValueError:
                self.client.rename(self.key, f"{self.key}:damaged-{int(time.time())}")
                data = {"alerts": []}
            if not isinstance(data, dict) or not isinstance(data.get("alerts"), list):
                data = {"alerts": []}
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                self.client.set(self.key, json.dumps(data, separators=(",", ":")))


def _trim(data: dict[str, Any]) -> None:
    """Drop the oldest alerts that every pipeline has delivered, beyond KEEP_DELIVERED; never an owed one."""
    done = [a for a in data["alerts"] if all(d["state"] == "delivered" for d in a["deliveries"].values())]
    for alert in done[:max(0, len(done) - KEEP_DELIVERED)]:
        data["alerts"].remove(alert)
