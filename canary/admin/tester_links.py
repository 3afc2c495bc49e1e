"""Tester links on the admin API: POST /api/tester-links makes one, GET lists them, DELETE ends one or all."""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Protocol

from canary.admin.ops_auth import AdminError, Answer, json_answer
from canary.dataplane.routing import Routing
from canary.dataplane.testers import TesterLinks, link_id, live_links

log = logging.getLogger("canary.testers")
DEFAULT_TTL = 8 * 3600
MAX_TTL = 30 * 86400          # a pin cookie's default life: a tester link is never longer-lived than a pin
MAX_LINKS = 100               # live links at once: a typo in a loop must not fill the shared state


class TesterHost(Protocol):
    """What the tester-link endpoints need of the router process."""

    routing: Routing

    @property
    def testers(self) -> TesterLinks: ...

    @property
    def public_origin(self) -> str: ...
    state: dict[str, Any]

    async def change(self, fn: Any) -> None: ...


def parse_ttl(value: Any) -> int:
    """Seconds as a number, or text such as 90s, 30m, 8h, 2d (the CLI's --ttl); 60 s .. 30 days."""
    seconds: float
    if isinstance(value, bool):
        raise AdminError(400, f"ttl: expected seconds or 30m/8h/2d, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value[:-1].isdigit() and value[-1:] in ("s", "m", "h", "d"):
        seconds = int(value[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[value[-1]]
    elif isinstance(value, str) and value.isdigit():
        seconds = int(value)
    else:
        raise AdminError(400, f"ttl: expected seconds or 30m/8h/2d, got {value!r}")
    if not 60 <= seconds <= MAX_TTL:
        raise AdminError(400, f"ttl: between 60 seconds and 30 days, got {value!r}")
    return int(seconds)


def _public(link: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {"id": link, **{k: entry.get(k) for k in ("cluster", "created_at", "expires_at", "opened_at")}}


async def handle(app: TesterHost, method: str, path: str, args: dict[str, Any]) -> Answer:
    """/api/tester-links and /api/tester-links/<id>: the one place links are made and ended."""
    rest = path.removeprefix("/api/tester-links").lstrip("/")
    now = time.time()
    if method == "GET" and not rest:
        links = sorted(live_links(app.state, now).items(), key=lambda kv: kv[1]["expires_at"])
        return json_answer({"links": [_public(k, v) for k, v in links]})
    if method == "POST" and not rest:
        return await _make(app, args, now)
    if method == "DELETE" and (rest or path == "/api/tester-links"):   # every link only when asked so
        return await _end(app, rest or "all", now)
    raise AdminError(405, f"no such endpoint: {method} {path}")


async def _make(app: TesterHost, args: dict[str, Any], now: float) -> Answer:
    unknown = set(args) - {"cluster", "ttl"}
    if unknown:
        raise AdminError(400, f"{sorted(unknown)[0]}: unknown key (the body is {{\"cluster\": NAME, \"ttl\": S}})")
    cluster = args.get("cluster")
    if not isinstance(cluster, str) or cluster not in app.routing.clusters:
        raise AdminError(400, f"cluster: one of {', '.join(app.routing.clusters)}, got {cluster!r}")
    ttl = parse_ttl(args.get("ttl", DEFAULT_TTL))
    link = link_id(os.urandom(12))

    def add(s: dict[str, Any]) -> None:
        links = live_links(s, now)        # expired links leave the state here
        if len(links) >= MAX_LINKS:
            raise AdminError(409, f"{MAX_LINKS} tester links are live: end some first (tester-link --revoke)")
        links[link] = {"cluster": cluster, "created_at": now, "expires_at": now + ttl, "opened_at": None}
        s["testers"] = links
    await app.change(add)
    log.warning("tester link %s made for cluster %s, valid %d s", link, cluster, ttl)
    return json_answer({"id": link, "cluster": cluster, "expires_at": now + ttl,
                        "url": app.public_origin.rstrip("/") + app.testers.url_path(link)}, 201)


async def _end(app: TesterHost, link: str, now: float) -> Answer:
    ended: list[str] = []

    def end(s: dict[str, Any]) -> None:
        links = live_links(s, now)      # the stored document's: a link made on another router a moment ago counts
        if link != "all" and link not in links:
            raise AdminError(404, f"no live tester link {link!r} (canary tester-link --list shows them)")
        gone = list(links) if link == "all" else [link]
        for k in gone:
            del links[k]
        ended[:] = gone         # set, not extended: a change may run again on a newer document
        s["testers"] = links
    await app.change(end)
    log.warning("tester link(s) ended: %s", ", ".join(ended) or "none")
    return json_answer({"ended": ended})
