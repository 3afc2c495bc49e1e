"""What `python -m deploy` does: status, chaos kill, graceful (rolling) restart, scale, release.

Every change that takes a node out of service goes through the router first — drain, wait until
its in-flight requests are done, act, wait until the node is ready and the router counts it
healthy again, undrain — so the other nodes (or the other cluster) carry the traffic meanwhile and
users see no error. Chaos kill deliberately skips all of that.
"""
from __future__ import annotations

import functools
import smtplib
from typing import Any, Callable

import redis

from deploy import programs
from deploy.node import http_ok
from deploy.node import wait_for as node_wait_for
from deploy.restart_counter import read_starts
from deploy.router_client import RouterClient, RouterError
from deploy.stack import CLUSTERS, MAX_NODES, RELEASE_RE, NodeSpec, StackError, StackSpec, loopback_address
from deploy.supervisor_rpc import Supervisor

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


# While a process restarts, its router entry, Redis or socket may answer with an error: "not yet".
wait_for = functools.partial(node_wait_for, interval=0.1, ignore=(OSError, RouterError, redis.RedisError))


def node_ready(node: NodeSpec) -> bool:
    return http_ok(f"http://{node.address}/readyz")


class Stack:
    """The running local stack: its layout, its supervisord and its router."""

    def __init__(self, spec: StackSpec, log: Log = _quiet) -> None:
        self.spec = spec
        self.supervisor = Supervisor(spec)
        self.router = RouterClient.of(spec)
        self.log = log

    # -- targets -------------------------------------------------------------------------------------------
    def targets(self, target: str) -> list[str]:
        """Program names a target stands for: a node, a whole cluster, `redis`, `mail` or `router`."""
        if target in CLUSTERS:
            return [n.name for n in self.spec.cluster_nodes(target)]
        if self.spec.node(target) or target in ("router", "mail"):
            return [target]
        if target == "redis":
            if not self.spec.embedded_redis:
                raise StackError("redis: external (REDIS_URL is set), so this stack does not supervise it")
            return ["redis"]
        names = ", ".join([*CLUSTERS, *(n.name for n in self.spec.nodes), "redis", "mail", "router"])
        raise StackError(f"unknown target {target!r}; expected one of: {names}")

    # -- status --------------------------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        infos = {i["name"]: i for i in self.supervisor.all_info() if i["group"] == i["name"]}
        starts = read_starts(self.spec.stack_dir / "starts.json")
        try:
            router_view = self.router.node_states()
            router_health = "ok"
        except RouterError:
            router_view, router_health = {}, "unreachable"
        rows = []
        names = ((["redis"] if self.spec.embedded_redis else []) + ["mail", "router"]
                 + [n.name for n in self.spec.nodes])
        if "demo-products" in infos:  # only when DEMO_CLIENT_SECRET started them
            names.append("demo-products")
        for name in names:
            info = infos.get(name, {})
            running = info.get("statename") == "RUNNING"
            node = self.spec.node(name)
            if node:
                health = router_view.get(name, {}).get("state", "unknown")
            elif name == "router":
                health = router_health
            elif name == "demo-products":
                health = "ok" if running and http_ok(f"{self.spec.demo_url}/healthz") else "down"
            elif name == "mail":
                health = "ok" if running and self.mail_ok() else "down"
            else:
                health = "ok" if running and self.redis_ok() else "down"
            rows.append({
                "name": name, "kind": "node" if node else name, "cluster": node.cluster if node else None,
                "release": node.release if node else None,
                "address": node.address if node else {"router": self.spec.listen, "mail": self.spec.mail_listen,
                                                      "demo-products": self.spec.demo_listen}.get(name, "unix socket"),
                "state": info.get("statename", "ABSENT"), "pid": info.get("pid") or None,
                "uptime": int(info["now"] - info["start"]) if running else 0,
                "restarts": max(0, starts.get(name, 0) - 1), "health": health,
            })
        return rows

    def redis_ok(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.spec.effective_redis_url, socket_timeout=0.5,
                                             socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def mail_ok(self) -> bool:
        """The local mail server greets and answers NOOP."""
        host, port = loopback_address(self.spec.mail_listen, "mail_listen")
        try:
            with smtplib.SMTP(host, port, local_hostname="localhost", timeout=0.5) as smtp:
                return smtp.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    # -- chaos ---------------------------------------------------------------------------------------------
    def kill(self, target: str) -> list[str]:
        killed = []
        for name in self.targets(target):
            pid = self.supervisor.kill(name)
            killed.append(f"{name} (pid {pid})" if pid else f"{name} (was not running)")
        return killed

    # -- graceful restart ----------------------------------------------------------------------------------
    def restart(self, target: str) -> None:
        for name in self.targets(target):
            node = self.spec.node(name)
            if node:
                self.roll_node(node)
            else:
                self.log(f"restarting {name}")
                self.supervisor.stop(name)
                self.supervisor.start(name)

    def roll_node(self, node: NodeSpec, rerender: bool = False) -> None:
        """Drain in the router, stop gracefully, (re-render its program), start, wait healthy, undrain.

        Whatever happens, a drain this command set is lifted again (an operator's drain is kept):
        a node that fails to come back is then simply unhealthy in the router, not drained for good."""
        router_up = self._router_up()
        drained_here = router_up and not self._drained(node)
        if drained_here:
            self.router.drain(node.name)
        try:
            if router_up:
                wait_for(lambda: self.router.node_states()[node.name]["outstanding"] == 0, 10,
                         f"{node.name}: in-flight requests to finish")
            release = self.spec.release(node.cluster)
            self.log(f"restarting {node.name}" + (f" as release {release}" if rerender else ""))
            if rerender:
                self.supervisor.remove_program(node.name)
                programs.write_node(self.spec, node)
                self.supervisor.add_program(node.name)
                node.release = release
                self.spec.save()
            else:
                self.supervisor.stop(node.name)
                self.supervisor.start(node.name)
            wait_for(lambda: node_ready(node), 30, f"{node.name}: /readyz")
            if router_up:
                # Health checks run while drained, so this waits for `healthy_threshold` good checks, not for traffic.
                wait_for(lambda: self._router_healthy(node, drained_ok=True), 15,
                         f"{node.name}: healthy in the router")
        finally:
            if drained_here:
                self.router.undrain(node.name)

    def _router_up(self) -> bool:
        """False only when the router does not answer; a refused token stops the command instead of
        letting it restart nodes without draining them first."""
        try:
            self.router.status()
            return True
        except RouterError as exc:
            if exc.status:
                raise
            return False

    def _drained(self, node: NodeSpec) -> bool:
        try:
            return f"{node.cluster}/{node.name}" in self.router.status().get("drained", [])
        except RouterError:
            return False

    def _router_healthy(self, node: NodeSpec, drained_ok: bool = False) -> bool:
        """The router counts the node healthy; while drained, its health-check verdict is asked for."""
        entry = self.router.node_states().get(node.name)
        if entry is None:
            return False
        if drained_ok and entry["state"] == "drained":
            return entry["health"] == "healthy"
        return entry["state"] == "healthy"

    # -- release -------------------------------------------------------------------------------------------
    def release(self, cluster: str, version: str) -> None:
        if cluster not in CLUSTERS:
            raise StackError(f"unknown cluster {cluster!r}; expected one of: {', '.join(CLUSTERS)}")
        if not RELEASE_RE.match(version):
            raise StackError(f"VERSION: 1-40 characters of letters, digits and . _ + -, starting with a letter "
                             f"or digit (got {version!r})")
        self.spec.releases[cluster] = version   # what new and rolled nodes of the cluster run
        self.spec.save()
        for node in self.spec.cluster_nodes(cluster):
            if node.release != version:       # a release run again after an interruption resumes
                self.roll_node(node, rerender=True)

    # -- scale ---------------------------------------------------------------------------------------------
    def scale(self, cluster: str, count: int) -> None:
        if cluster not in CLUSTERS:
            raise StackError(f"unknown cluster {cluster!r}; expected one of: {', '.join(CLUSTERS)}")
        if not 1 <= count <= MAX_NODES:
            raise StackError(f"N: must be between 1 and {MAX_NODES} (got {count})")
        while len(self.spec.cluster_nodes(cluster)) < count:
            self._add_node(cluster)
        while len(self.spec.cluster_nodes(cluster)) > count:
            self._remove_node(self.spec.cluster_nodes(cluster)[-1])

    def _add_node(self, cluster: str) -> None:
        node = self.spec.next_node(cluster)
        self.log(f"adding {node.name} on {node.address}")
        programs.write_node(self.spec, node)
        try:
            self.supervisor.add_program(node.name)
            wait_for(lambda: node_ready(node), 30, f"{node.name}: /readyz")
            self.router.set_nodes(cluster, self.spec.router_nodes(cluster) + [node.router_entry()])
        except BaseException:
            self.supervisor.remove_program(node.name)   # nothing half-added stays behind
            programs.remove_node(self.spec, node)
            raise
        self.spec.nodes.append(node)
        self.spec.save()
        programs.write_router(self.spec)
        if self._drained(node):          # a drain left over from an earlier node of the same name
            self.router.undrain(node.name)
        wait_for(lambda: self._router_healthy(node), 10, f"{node.name}: healthy in the router")
        wait_for(lambda: self.supervisor.info(node.name)["statename"] == "RUNNING", 10, f"{node.name}: RUNNING")

    def _remove_node(self, node: NodeSpec) -> None:
        self.log(f"removing {node.name}")
        self.router.drain(node.name)
        try:
            wait_for(lambda: self.router.node_states()[node.name]["outstanding"] == 0, 10,
                     f"{node.name}: in-flight requests to finish")
        except BaseException:
            self.router.undrain(node.name)   # not removed after all: back in service
            raise
        self.spec.nodes.remove(node)
        self.router.set_nodes(node.cluster, self.spec.router_nodes(node.cluster))
        self.supervisor.remove_program(node.name)
        programs.remove_node(self.spec, node)
        self.spec.save()
        programs.write_router(self.spec)
