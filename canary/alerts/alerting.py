"""Alerts of the router: events seen, summarised per cluster, journaled, kept in the outbox and delivered through every pipeline.

The path of an event: `emit()` writes it to the journal at once (var/alerts/journal.jsonl, every
event in full: nothing folded away there); events of one cluster within `group_seconds` become one
alert ("green: 2 nodes down, failover to blue", Alertmanager's group_wait), which goes into the
outbox (outbox.py) owed to every pipeline (pipelines.py). The delivery loop tries
what is due, each pipeline on its own with back-off, Retry-After and a breaker; a pipeline that
keeps refusing is itself reported through the others. What the router watches comes from
`Watch`: a diff of node and cluster states between two looks, so one place sees every change.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from canary.alerts.outbox import Outbox
from canary.alerts.pipelines import Pipeline, fingerprint

log = logging.getLogger("canary.alerts")
GROUP_SECONDS = 2.0       # events of one cluster this close together are one alert
FOLD_SECONDS = 300.0      # the same alert again within this window (or from another router) is one alert
TICK_SECONDS = 0.25
META_REFUSALS = 5         # a pipeline refusing this many within 2 min is reported through the others ...
META_EVERY_SECONDS = 600.0    # ... at most this often
SEVERITY = {"node_down": "warning", "node_ejected": "warning", "node_up": "info", "failover": "critical",
            "failback": "info", "panic": "critical", "panic_over": "info", "rollback": "critical",
            "promote": "info", "pipeline_failing": "critical", "test": "info",
            "plan_started": "info", "plan_step": "info", "plan_extended": "info", "plan_paused": "warning",
            "plan_resumed": "info", "plan_aborted": "warning", "plan_rollback": "critical", "plan_promoted": "info",
            "shift_away": "warning", "shift_back": "info", "slo_breach": "critical", "slo_ok": "info"}
# how an older version named a webhook: `webhook HOST:PORT/PATH`, the path being a Slack webhook's secret
LEGACY_WEBHOOK = re.compile(r"webhook [^\s#/]*?:\d*(?:/[^\s#]*)?(?=\s|$)")
Snapshot = dict[str, Any]   # {"nodes": {label: state}, "clusters": {name: available}, "panic": bool, "stable", "canary"}


class Alerting:
    """The router's alerts: emit(), the delivery loop (run()), and what `canary alerts` shows (status())."""

    def __init__(self, folder: Path, pipelines: list[Pipeline], group_seconds: float = GROUP_SECONDS,
                 owner: str | None = None, outbox: Outbox | None = None) -> None:
        self.folder = folder
        self.outbox = outbox or Outbox(folder)
        self.journal_path = folder / "journal.jsonl"
        self.pipelines = {p.name: p for p in pipelines}
        self.group_seconds = group_seconds
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}"
        self.groups: dict[str, list[dict[str, Any]]] = {}
        self.meta_sent: dict[str, float] = {}
        self.task: asyncio.Task | None = None
        self.migrated = False

    def migrate(self) -> None:
        """Carry an outbox written by an older version over to today's pipeline names, once per start, before the
        first delivery or listing. Old webhook names held the URL's path (a Slack webhook's secret) and were
        logged, mailed and shown; the outbox keys deliveries by name. A delivery under a configured pipeline's old
        name moves to its new one: nothing owed is lost, nothing delivered is sent again. An old name that no
        pipeline claims any more (its URL changed, as after a leak) gets a redacted name and its errors are
        hidden, there being no telling what secret they quote. Texts and errors lose every configured secret."""
        if self.migrated:
            return
        renamed = {old: p.name for p in self.pipelines.values() for old in p.legacy_names if old != p.name}

        def rename(name: str) -> tuple[str, bool]:
            if name in self.pipelines or name not in renamed and not LEGACY_WEBHOOK.fullmatch(name):
                return name, False
            return (renamed[name], False) if name in renamed else (_redacted(name), True)

        def scrub(text: str) -> str:
            for old in sorted(renamed, key=len, reverse=True):
                text = text.replace(old, renamed[old])
            if LEGACY_WEBHOOK.match(text) and " has refused " in text:   # a gone webhook's pipeline_failing
                text = text.split(" (last: ", 1)[0] + " (last error hidden: its URL is no longer configured)"
            text = LEGACY_WEBHOOK.sub(lambda m: _redacted(m.group(0)), text)
            for pipeline in self.pipelines.values():
                text = pipeline.scrub(text)
            return text
        moved = self.outbox.rename_pipelines(rename, scrub)
        self.migrated = True
        if moved:
            log.warning("alert outbox: %d deliveries carried over to the new pipeline names", moved)

    # -- events --------------------------------------------------------------------------------------
    def emit(self, kind: str, text: str, cluster: str | None = None, node: str | None = None,
             figures: dict[str, Any] | None = None, group: bool = True) -> None:
        event = {"kind": kind, "severity": SEVERITY.get(kind, "warning"), "text": text, "cluster": cluster,
                 "node": node, "figures": figures or {}, "at": time.time()}
        self.journal(event)
        if group and cluster:
            self.groups.setdefault(cluster, []).append(event)
        else:
            self.alert([event])

    def journal(self, entry: dict[str, Any]) -> None:
        """Every event, as it happened, one JSON line (0600): the detail a summary leaves out."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def alert(self, events: list[dict[str, Any]], pipelines: list[str] | None = None) -> dict[str, Any] | None:
        """One alert for `events` (a cascade summarised) into the outbox, owed to `pipelines` (default: all)."""
        first = events[0]
        kinds = sorted({e["kind"] for e in events})
        text = first["text"] if len(events) == 1 else summary(first["cluster"], events)
        fold_key = ":".join([",".join(kinds), first["cluster"] or "", (first["node"] or "") if len(events) == 1 else ""])
        bucket = int(first["at"] // FOLD_SECONDS)
        alert = {"id": hashlib.sha256(f"{fold_key}|{bucket}".encode()).hexdigest()[:20], "fold_key": fold_key,
                 "kind": first["kind"] if len(events) == 1 else "cascade",
                 "severity": max((e["severity"] for e in events), key=_rank), "text": text,
                 "cluster": first["cluster"], "node": first["node"] if len(events) == 1 else None,
                 "at": first["at"], "count": len(events),
                 "figures": first["figures"] if len(events) == 1 else _counts(events),
                 "events": [{k: e[k] for k in ("kind", "node", "text", "at")} for e in events]}
        if first["kind"] == "test":
            alert["id"] += f"-{int(first['at'] * 1000)}"   # every test is sent, never folded
        names = list(self.pipelines) if pipelines is None else pipelines
        if not self.outbox.add(alert, names):
            return None   # the same alert is already owed (folded: another router, or a repeat)
        log.warning("alert: %s", text)
        return alert

    def flush_groups(self, now: float) -> None:
        for cluster, events in list(self.groups.items()):
            if events and now - events[0]["at"] >= self.group_seconds:
                del self.groups[cluster]
                self.alert(events)

    # -- delivery ------------------------------------------------------------------------------------
    def start(self, watch: Callable[[], None] | None = None) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run(watch))

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def run(self, watch: Callable[[], None] | None = None) -> None:
        while True:
            try:
                if watch is not None:
                    watch()
                self.flush_groups(time.time())
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must outlive any one bad alert or disk hiccup
                log.exception("alert delivery loop error")
            await asyncio.sleep(TICK_SECONDS)

    async def deliver_due(self) -> None:
        if not self.migrated:
            await asyncio.to_thread(self.migrate)
        now = time.time()
        claimed = await asyncio.to_thread(self.outbox.claim, now, lambda name: self._usable(name, now), self.owner)
        if claimed:
            await asyncio.gather(*(self.deliver(alert, name) for alert, name in claimed))

    def _usable(self, name: str, now: float) -> bool:
        pipeline = self.pipelines.get(name)
        return pipeline is not None and pipeline.usable(now)

    async def deliver(self, alert: dict[str, Any], name: str) -> bool:
        pipeline = self.pipelines[name]
        ok, error, wait = await asyncio.to_thread(pipeline.deliver, alert)
        now = time.time()
        pipeline.record(ok, now)
        await asyncio.to_thread(self.outbox.report, alert["id"], name, ok, error, wait, now)
        if not ok:
            log.warning("alert %s not delivered by %s: %s%s", alert["id"], name, error,
                        f" (retry after {wait:.0f} s)" if wait is not None else "")
            self.report_failing(pipeline, error, now)
        return ok

    def report_failing(self, pipeline: Pipeline, error: str, now: float) -> None:
        """A pipeline that refuses again and again is an alert of its own, through the other pipelines."""
        others = [n for n in self.pipelines if n != pipeline.name]
        if len(pipeline.refused) < META_REFUSALS or now - self.meta_sent.get(pipeline.name, -1e9) < META_EVERY_SECONDS:
            return
        self.meta_sent[pipeline.name] = now
        event = {"kind": "pipeline_failing", "severity": "critical", "cluster": None, "node": None, "at": now,
                 "text": f"{pipeline.name} has refused {len(pipeline.refused)} alerts in 2 min (last: {error})",
                 "figures": {"refused": len(pipeline.refused), "breaker": pipeline.breaker}}
        self.journal(event)
        if others:
            self.alert([event], pipelines=others)

    async def test(self, timeout: float = 10.0) -> dict[str, Any]:
        """A test alert through every pipeline (never folded); each pipeline's first result, or "no answer"."""
        self.emit("test", "test alert from `canary alerts test`", group=False)
        alert = next(a for a in reversed(self.outbox.snapshot()) if a["kind"] == "test")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((a for a in self.outbox.snapshot() if a["id"] == alert["id"]), None)
            if found is None or all(d["attempts"] for d in found["deliveries"].values()):
                break
            await asyncio.sleep(TICK_SECONDS)
        found = found or alert
        return {"alert": alert["id"], "journal": str(self.journal_path),
                "results": {name: {"delivered": d["state"] == "delivered", "attempts": d["attempts"],
                                   "error": d["error"] or ("" if d["attempts"] else "no answer yet")}
                            for name, d in found["deliveries"].items()}}

    # -- what `canary alerts` shows ------------------------------------------------------------------
    def status(self, limit: int = 50) -> dict[str, Any]:
        self.migrate()
        alerts = self.outbox.snapshot()
        now = time.time()
        pipelines = {}
        for name, pipeline in self.pipelines.items():
            states = [a["deliveries"][name] for a in alerts if name in a["deliveries"]]
            pipelines[name] = {"delivered": sum(d["state"] == "delivered" for d in states),
                               "owed": sum(d["state"] != "delivered" for d in states),
                               "breaker": "open" if not pipeline.usable(now) else pipeline.breaker,
                               "refused_2min": len([t for t in pipeline.refused if now - t < 120]),
                               "last_error": next((d["error"] for d in reversed(states) if d["error"]), "")}
        return {"pipelines": pipelines, "journal": str(self.journal_path),
                "alerts": [{k: a[k] for k in ("id", "kind", "severity", "text", "cluster", "node", "at", "count",
                                              "deliveries")} for a in alerts[-limit:]]}


class Watch:
    """Changes between two looks at the router (node states, cluster availability, panic, roles) as events."""

    def __init__(self, look: Callable[[], Snapshot], alerting: Alerting) -> None:
        self.look, self.alerting = look, alerting
        self.last: Snapshot | None = None

    def __call__(self) -> None:
        now = self.look()
        before, self.last = self.last, now
        if before is None:
            return
        emit = self.alerting.emit
        for label, state in now["nodes"].items():
            was = before["nodes"].get(label)
            cluster, _, node = label.partition("/")
            if was is None or was == state or "drained" in (was, state):
                continue   # a new member, or an operator's drain: not an incident
            if state == "unhealthy":
                emit("node_down", f"{label} failed its health checks", cluster, node, {"was": was})
            elif state == "ejected":
                emit("node_ejected", f"{label} ejected by outlier detection", cluster, node, {"was": was})
            elif state == "healthy":
                emit("node_up", f"{label} is healthy again", cluster, node, {"was": was})
        for name, available in now["clusters"].items():
            was = before["clusters"].get(name)
            other = now["canary"] if name == now["stable"] else now["stable"]
            if was and not available:
                emit("failover", f"{name} unavailable: all its traffic, pinned users too, goes to {other}", name)
            elif was is False and available:
                emit("failback", f"{name} available again: traffic returns under slow start", name)
        if now["panic"] != before["panic"]:
            emit("panic" if now["panic"] else "panic_over",
                 "no cluster is available: panic mode, every node tried" if now["panic"] else "panic mode over",
                 group=False)


def summary(cluster: str | None, events: list[dict[str, Any]]) -> str:
    """A cascade in one line: "green: 2 nodes down, failover to blue", and what already recovered in the same
    group after a semicolon. A node both failing its checks and ejected is one node down, not two."""
    def nodes(*kinds: str) -> set[str]:
        return {e.get("node") or e["text"] for e in events if e["kind"] in kinds}

    def count(n: int, word: str) -> str:
        return f"{n} node{'s' if n > 1 else ''} {word}"
    down, ejected, up = nodes("node_down", "node_ejected"), nodes("node_ejected") - nodes("node_down"), nodes("node_up")
    parts, later = [], []
    if down:
        parts.append(count(len(down), "down") + (f" ({len(ejected)} by outlier detection)" if ejected else ""))
    for event in events:
        if event["kind"] == "failover":
            parts.append("failover to " + event["text"].rsplit(" goes to ", 1)[-1])
    if up:
        later.append(count(len(up), "up"))
    if any(e["kind"] == "failback" for e in events):
        later.append("back in service")
    line = ", ".join(parts) + ("; then " if parts and later else "") + ", ".join(later)
    return f"{cluster}: {line or str(len(events)) + ' events'}"


def _counts(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        counts[event["kind"]] = counts.get(event["kind"], 0) + 1
    return counts


def _redacted(legacy: str) -> str:
    """A name for an old `webhook HOST:PORT/PATH` no pipeline claims: its host and a fingerprint, as today's."""
    return f"webhook {legacy[len('webhook '):].split('/', 1)[0].rpartition(':')[0]}#{fingerprint(legacy)}"


def _rank(severity: str) -> int:
    return {"info": 0, "warning": 1, "critical": 2}.get(severity, 1)
