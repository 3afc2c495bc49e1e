"""Admin HTTP listener: /healthz, /metrics, /api/status, the POST verbs and the cluster node lists."""
from __future__ import annotations

import asyncio
import http
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httptools

from canary.admin import dashboard, tester_links
from canary.admin.ops_auth import AdminError, Answer, AuthHost, OpsAuth, json_answer
from canary.alerts.alerting import Alerting
from canary.automation import plan
from canary.dataplane.records import per_second
from canary.dataplane.routing import Routing
from canary.dataplane.testers import TesterLinks
from canary.discovery.membership import Membership, MembershipError, parse_nodes, spec_of

log = logging.getLogger("canary.admin")
_MAX_BODY = 64 * 1024
_MAX_HEAD = 64 * 1024
LIVE_SECONDS = 120


class RouterControl(AuthHost, Protocol):
    """What the admin listener may read and change of the router process (canary/cli/router_process.py)."""

    routing: Routing
    membership: Membership
    alerting: Alerting | None
    state: dict[str, Any]

    @property
    def testers(self) -> TesterLinks: ...

    @property
    def public_origin(self) -> str: ...

    async def change(self, fn: Callable[[dict[str, Any]], None]) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def resolve_target(self, target: str) -> str | None: ...

    def metrics(self) -> bytes: ...


class _Request:
    """One admin request parsed by httptools (llhttp, strict, as the proxy port): head and body, both capped."""

    __slots__ = ("parser", "url", "headers", "body", "size", "complete")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.complete = False

    def _count(self, n: int, limit: int, status: int, what: str) -> None:
        self.size += n
        if self.size > limit:
            raise AdminError(status, f"{what} too large")

    def on_url(self, url: bytes) -> None:
        self._count(len(url), _MAX_HEAD, 431, "request head")
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value), _MAX_HEAD, 431, "request head")
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        if int(self.headers.get(b"content-length", b"0")) > _MAX_BODY:   # llhttp let only digits through
            raise AdminError(413, "body too large")
        self.size = 0

    def on_body(self, data: bytes) -> None:
        self._count(len(data), _MAX_BODY, 413, "body")
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.complete = True


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[bytes, bytes], bytes]:
    """(method, path, lower-cased headers, body) of the one request on this connection; ValueError when it is
    malformed or cut short, AdminError for one too large."""
    req = _Request()
    while not req.complete:
        data = await reader.read(65536)
        if not data:
            raise ValueError("the connection closed inside the request")
        try:
            req.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise ValueError("no upgrades on the admin port") from None
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, AdminError):
                raise e.__context__ from None
            raise ValueError(str(e)) from None
    return req.parser.get_method().decode(), req.url.decode("latin-1"), req.headers, b"".join(req.body)


class Admin:
    """The admin listener: one request per connection, parsed by httptools; it is not on the hot path."""

    def __init__(self, app: RouterControl, token: str, secure_cookie: bool = False) -> None:
        self.app = app
        self.auth = OpsAuth(app, token, secure_cookie)
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        self.server = await asyncio.start_server(self._handle, host, port, reuse_port=reuse_port or None)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                method, path, headers, body = await read_request(reader)
                peer = writer.get_extra_info("peername")
                status, ctype, payload, more = await self.route(method, path.split("?")[0], headers, body,
                                                                peer[0] if peer else "")
        except AdminError as e:
            status, ctype, payload, more = e.status, "application/json", json.dumps({"error": str(e)}).encode(), \
                e.headers
        except (ValueError, TimeoutError):
            status, ctype, payload, more = 400, "application/json", b'{"error": "bad request"}', {}
        except Exception:  # never kill the listener; details go to the log, not to the client
            log.exception("admin error")
            status, ctype, payload, more = 500, "application/json", b'{"error": "internal error"}', {}
        if status == 401:
            more = {"WWW-Authenticate": "Bearer", **more}
        extra = "".join(f"{k}: {v}\r\n" for k, v in more.items())
        try:
            writer.write(f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(payload)}\r\n{extra}Connection: close\r\n\r\n".encode() + payload)
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def route(self, method: str, path: str, headers: dict[bytes, bytes], body: bytes, peer: str = "") -> Answer:
        """One request's answer; `peer` is the connecting address (the client, or a proxy: ops_auth says which)."""
        app = self.app
        if path == "/healthz" and method in ("GET", "HEAD"):
            return 200, "text/plain", b"ok\n", {}
        if path == "/metrics" and method == "GET":
            return 200, "text/plain; version=0.0.4; charset=utf-8", app.metrics(), {}
        if path.startswith("/static/"):
            found = dashboard.static(path)
            if found is None or method != "GET":
                raise AdminError(404 if found is None else 405, f"no such file: {method} {path}")
            return 200, found[1], found[0], {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if path in ("/", "/login", "/logout"):
            return await self.auth.page(method, path, headers, body, peer)
        if not await self.auth.authorized(method, headers, peer):
            raise AdminError(401, "missing or bad bearer token")
        if path == "/api/sign-out-all" and method == "POST":
            await self.auth.sign_out_all(peer, headers)
            return json_answer({"signed_out": "every ops dashboard session"})
        if path == "/api/status" and method == "GET":
            return json_answer(app.status())
        if path == "/api/live" and method == "GET":
            return json_answer(self.live())
        if path in ("/api/alerts", "/api/alerts/test"):
            return await self.alerts(method, path)
        if path == "/api/plan/history" and method == "GET":
            return json_answer({"plan": plan.progress(app.state, time.time()), "history": app.state.get("plan_history", [])})
        if path.startswith("/api/plan/") and method == "POST" and path[10:] in _PLAN_VERBS:
            await _plan_verb(app, path[10:], _args(body))
            return json_answer(app.status())
        if path == "/api/tester-links" or path.startswith("/api/tester-links/"):
            return await tester_links.handle(app, method, path, _args(body) if method == "POST" else {})
        m = _NODES_PATH.fullmatch(path)
        if m is not None:
            return await self.cluster_nodes(method, m[1], body)
        verb = _VERBS.get(path.removeprefix("/api/")) if path.startswith("/api/") else None
        if method != "POST":
            raise AdminError(404 if not path.startswith("/api/") else 405, f"no such endpoint: {method} {path}")
        if verb is None:
            raise AdminError(404, f"no such endpoint: {path}")
        await verb(app, _args(body))
        return json_answer(app.status())

    def live(self) -> dict[str, Any]:
        """The dashboard's charts: the last two minutes of each cluster, one point a second (records.py)."""
        to_wall = time.time() - time.monotonic()
        now = time.monotonic()
        return {"seconds": LIVE_SECONDS, "clusters": {name: per_second(c.records, now, LIVE_SECONDS, to_wall)
                                                      for name, c in self.app.routing.clusters.items()}}

    async def alerts(self, method: str, path: str) -> Answer:
        """GET /api/alerts: recent alerts and each pipeline's state; POST /api/alerts/test: a test alert
        through every pipeline, answered with each one's first result (`canary alerts [test]`)."""
        alerting = self.app.alerting
        if alerting is None:
            raise AdminError(409, "alerting runs in the router's first worker, which has the admin listener")
        if path == "/api/alerts" and method == "GET":
            return json_answer(alerting.status())
        if path == "/api/alerts/test" and method == "POST":
            return json_answer(await alerting.test())
        raise AdminError(405, f"no such endpoint: {method} {path}")

    async def cluster_nodes(self, method: str, cluster: str, body: bytes) -> Answer:
        """GET: the cluster's current node list. PUT: replace it (declarative) in the shared state."""
        app = self.app
        if cluster not in app.routing.clusters:
            raise AdminError(404, f"unknown cluster: {cluster!r}")
        if method == "GET":
            source, _ = app.membership.specs(app.state, cluster)
            nodes = [spec_of(n) for n in app.routing.clusters[cluster].nodes]
            return json_answer({"cluster": cluster, "source": source, "nodes": nodes})
        if method != "PUT":
            raise AdminError(405, f"no such endpoint: {method} /api/clusters/{cluster}/nodes (use GET or PUT)")
        if cluster in app.membership.dns:
            raise AdminError(409, f"cluster {cluster!r} discovers its nodes through DNS; change its DNS records")
        args = _args(body)
        for k in args:
            if k != "nodes":
                raise AdminError(400, f"{k}: unknown key (the body is {{\"nodes\": [...]}})")
        if "nodes" not in args:
            raise AdminError(400, "nodes: required list of {name, address, weight} objects")
        names = list(app.routing.clusters)
        try:
            wanted = [spec_of(n) for n in parse_nodes(args["nodes"], cluster, names)]
        except MembershipError as e:
            raise AdminError(400, str(e)) from None

        def put(s: dict[str, Any]) -> None:
            # checked against the freshly loaded document: another instance may have changed the other cluster
            elsewhere = app.membership.names_elsewhere(s, cluster)
            for i, w in enumerate(wanted):
                if w["name"] in elsewhere:
                    raise AdminError(400, f"nodes[{i}].name: {w['name']!r} is already a node of cluster "
                                          f"{elsewhere[w['name']]!r} (node names are unique across clusters)")
            _, old = app.membership.specs(s, cluster)
            gone = {f"{cluster}/{o.get('name')}" for o in (old if isinstance(old, list) else ())
                    if isinstance(o, dict)} - \
                {f"{cluster}/{w['name']}" for w in wanted}
            # A removed node forgets its drain: a later node of the same name must not start drained by
            # accident (drain CLUSTER/NODE again before adding it to keep it out).
            s["drained"] = sorted(set(s.get("drained", [])) - gone)
            nodes = s.get("nodes")
            s["nodes"] = dict(nodes) if isinstance(nodes, dict) else {}
            s["nodes"][cluster] = wanted
        await app.change(put)
        return json_answer(app.status())

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def _args(body: bytes) -> dict[str, Any]:
    try:
        args = json.loads(body) if body.strip() else {}
    except ValueError:
        raise AdminError(400, "body must be JSON") from None
    if not isinstance(args, dict):
        raise AdminError(400, "body must be a JSON object")
    return args


# -- POST verbs (a table rather than an if-chain: one small function per verb) -----------------------------
def _emit(app: RouterControl, kind: str, text: str, cluster: str | None = None, **figures: Any) -> None:
    if app.alerting is not None:
        app.alerting.emit(kind, text, cluster, figures=figures, group=False)


async def _ramp(app: RouterControl, args: dict[str, Any]) -> None:
    """A manual ramp during a plan pauses it: a human has taken over (`plan resume` hands back)."""
    p = args.get("percent")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100:
        raise AdminError(400, "percent must be a number between 0 and 100")
    paused: list[bool] = []

    def ramp(s: dict[str, Any]) -> None:
        s["percent"] = float(p)
        live = plan.live(s)
        running = live is not None and live["status"] == "running"
        if running:
            plan.pause(s, f"manual ramp to {float(p):g} %", time.time())
        paused[:] = [True] if running else []   # the last run decides: a change may run again on a newer document
    await app.change(ramp)
    if paused:
        _emit(app, "plan_paused", f"plan paused: manual ramp to {float(p):g} %", app.routing.canary.name)


async def _promote(app: RouterControl, args: dict[str, Any]) -> None:
    canary = app.routing.canary.name

    def promote(s: dict[str, Any]) -> None:
        if s.get("canary") != canary:     # promoted meanwhile (another router, or this change run again)
            raise AdminError(409, f"{canary} is no longer the canary: the roles changed meanwhile")
        s["stable"], s["canary"], s["percent"] = s["canary"], s["stable"], 0.0
        plan.end(s, "promoted", f"{s['stable']} promoted by an operator", time.time())
    await app.change(promote)
    _emit(app, "promote", f"promoted: {canary} is the stable cluster", canary)


async def _rollback(app: RouterControl, args: dict[str, Any]) -> None:
    was = app.routing.percent

    def rollback(s: dict[str, Any]) -> None:
        s["percent"] = 0.0
        plan.end(s, "rolled_back", "rolled back by an operator: share 0 %", time.time())
    await app.change(rollback)
    if app.alerting is not None:
        canary = app.routing.canary.name
        app.alerting.emit("rollback", f"rollback: {canary}'s share set to 0 % (was {was:g} %)", canary,
                          figures={"share_before": was}, group=False)


async def _mirror(app: RouterControl, args: dict[str, Any]) -> None:
    """Shadow traffic (canary/dataplane/mirror.py): PERCENT of the safe requests copied to CLUSTER; 0 stops it.
    By hand during a plan it pauses the plan, as a manual ramp does."""
    cluster, p = args.get("cluster"), args.get("percent")
    if not isinstance(cluster, str) or cluster not in app.routing.clusters:
        raise AdminError(400, f"cluster: one of {', '.join(app.routing.clusters)}, got {cluster!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100:
        raise AdminError(400, "percent must be a number between 0 and 100")
    unknown = set(args) - {"cluster", "percent"}
    if unknown:
        raise AdminError(400, f"{sorted(unknown)[0]}: unknown key (the body is {{\"cluster\": NAME, \"percent\": P}})")

    def mirror(s: dict[str, Any]) -> None:
        s["mirror"] = {"cluster": cluster, "percent": float(p)} if p else None
        live = plan.live(s)
        if live is not None and live["status"] == "running":
            plan.pause(s, f"manual mirror of {float(p):g} % to {cluster}", time.time())
    await app.change(mirror)


def _drain_verb(drain: bool) -> Callable[[RouterControl, dict[str, Any]], Awaitable[None]]:
    async def verb(app: RouterControl, args: dict[str, Any]) -> None:
        target = args.get("target")
        label = app.resolve_target(target) if isinstance(target, str) else None
        if label is None:
            raise AdminError(400, f"unknown cluster or node: {target!r}")

        def change(s: dict[str, Any]) -> None:
            d = set(s.get("drained", []))
            (d.add if drain else d.discard)(label)
            s["drained"] = sorted(d)
        await app.change(change)
    return verb


_VERBS: dict[str, Callable[[RouterControl, dict[str, Any]], Awaitable[None]]] = {
    "ramp": _ramp, "promote": _promote, "rollback": _rollback, "mirror": _mirror,
    "drain": _drain_verb(True), "undrain": _drain_verb(False),
}
async def _plan_verb(app: RouterControl, verb: str, args: dict[str, Any]) -> None:
    """POST /api/plan/{start,pause,resume,abort}; a plan error is the caller's (400) or a conflict (409)."""
    now = time.time()
    try:
        if verb == "start":
            unknown = set(args) - {"steps", "hold"}
            if unknown:
                raise plan.PlanError(f"{sorted(unknown)[0]}: unknown key (the body is {{\"steps\": [...], \"hold\": S}})")
            (mirror, steps), hold = plan.parse_plan(args.get("steps")), plan.parse_hold(args.get("hold"))
            await app.change(lambda s: plan.start(s, steps, hold, now, mirror))
        elif verb == "pause":
            await app.change(lambda s: plan.pause(s, "paused by an operator", now))
        elif verb == "resume":
            await app.change(lambda s: plan.resume(s, now))
        else:
            await app.change(lambda s: plan.abort(s, now))
    except plan.PlanError as e:
        raise AdminError(409 if e.conflict else 400, str(e)) from None
    entry = app.state.get("plan_history", [{}])[-1]
    _emit(app, _PLAN_VERBS[verb], f"plan {verb}: {entry.get('reason', '')}", app.routing.canary.name)


_PLAN_VERBS = {"start": "plan_started", "pause": "plan_paused", "resume": "plan_resumed", "abort": "plan_aborted"}
_NODES_PATH = re.compile(r"/api/clusters/([^/]+)/nodes")


