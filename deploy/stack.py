"""The local stack's layout — addresses, clusters, nodes, releases — kept in var/stack/stack.json.

`make up` writes it; `python -m deploy …` reads and updates it (scale adds nodes, release changes a
cluster's tag). It is the single source from which the supervisord programs and the router's
configuration are rendered, so a restart of either comes back with what was last decided.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploy.demo_products import DEFAULT_LISTEN as DEFAULT_DEMO_LISTEN


CLUSTERS = ("blue", "green")             # stable first, canary second (the router's convention)
DEFAULT_LISTEN = "127.0.0.1:8000"
DEFAULT_ADMIN = "127.0.0.1:8001"
DEFAULT_MAIL_LISTEN = "127.0.0.1:8025"   # the local SMTP server (deploy/mail_server.py)
DEFAULT_NODE_PORT_BASE = 8010
DEFAULT_NODES = 2
DEFAULT_CANARY_PERCENT = 12.0            # the first step of the usual ramp 12 -> 20 -> 50 -> 100
MAX_NODES = 16                           # per cluster: more would only fight over two cores here
MAX_SOCKET_PATH = 100                    # sun_path is 108 bytes on Linux (104 on macOS), with a margin
RELEASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,39}$")


class StackError(Exception):
    """A bad option or target: the message names it; the CLI prints it and exits 2."""


def parse_address(value: str, key: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StackError(f"{key}: expected HOST:PORT with a port 1-65535 (got {value!r})")
    return host, int(port)


def loopback_address(value: str, key: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [::1]:PORT) on this machine only: for servers that must never face a network."""
    host, port = parse_address(value, key)
    if ":" in host and not (host.startswith("[") and host.endswith("]")):   # else ::1:25 reads as host "::1"
        raise StackError(f"{key}: an IPv6 address goes in brackets, e.g. [::1]:PORT (got {value!r})")
    host = host.removeprefix("[").removesuffix("]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise StackError(f"{key}: must be a loopback address such as 127.0.0.1:PORT (got {value!r})")
    return host, port


@dataclass
class NodeSpec:
    cluster: str
    name: str
    port: int
    release: str = "dev"                 # the tag this node was last started with

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def router_entry(self) -> dict[str, str]:
        """This node as the router's admin API lists it (PUT /api/clusters/<c>/nodes)."""
        return {"name": self.name, "address": self.address}


@dataclass
class StackSpec:
    var_dir: str
    listen: str = DEFAULT_LISTEN
    admin: str = DEFAULT_ADMIN
    node_port_base: int = DEFAULT_NODE_PORT_BASE
    canary_percent: float = DEFAULT_CANARY_PERCENT
    redis_url: str = ""                  # empty: the embedded Redis on var/redis.sock
    releases: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeSpec] = field(default_factory=list)
    demo_listen: str = DEFAULT_DEMO_LISTEN  # the demo products (only run when DEMO_CLIENT_SECRET is set)
    mail_listen: str = DEFAULT_MAIL_LISTEN  # the local SMTP server, storing into var/mail/

    # -- paths ---------------------------------------------------------------------------------------------
    @property
    def var(self) -> Path:
        return Path(self.var_dir)

    @property
    def stack_dir(self) -> Path:
        return self.var / "stack"

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"unix://{self.var / 'redis.sock'}?db=0"

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin}"

    @property
    def demo_url(self) -> str:
        return f"http://{self.demo_listen}"

    @property
    def mail_url(self) -> str:
        """EMAIL_URL of the local mail server."""
        return f"smtp://{self.mail_listen}"

    @property
    def maildir(self) -> Path:
        return maildir(self.var)

    # -- queries -------------------------------------------------------------------------------------------
    def cluster_nodes(self, cluster: str) -> list[NodeSpec]:
        return [n for n in self.nodes if n.cluster == cluster]

    def router_nodes(self, cluster: str) -> list[dict[str, str]]:
        return [n.router_entry() for n in self.cluster_nodes(cluster)]

    def node(self, name: str) -> NodeSpec | None:
        return next((n for n in self.nodes if n.name == name), None)

    def release(self, cluster: str) -> str:
        return self.releases.get(cluster, "dev")

    def next_node(self, cluster: str) -> NodeSpec:
        """The lowest unused index in the cluster and the first free port from node_port_base upwards."""
        used = {n.name for n in self.nodes}
        index = next(i for i in range(1, MAX_NODES * 4) if f"{cluster}-{i}" not in used)
        taken = {n.port for n in self.nodes} | {parse_address(self.listen, "listen")[1],
                                                parse_address(self.admin, "admin")[1],
                                                parse_address(self.demo_listen, "demo_listen")[1],
                                                parse_address(self.mail_listen, "mail_listen")[1]}
        port = self.node_port_base
        while port in taken or not port_free(port):
            port += 1
            if port > 65535:
                raise StackError("node_port_base: no free port left above it")
        return NodeSpec(cluster, f"{cluster}-{index}", port, self.release(cluster))

    # -- persistence ---------------------------------------------------------------------------------------
    def save(self) -> None:
        """The layout, and the nodes as a Prometheus file_sd list (deploy/monitoring/prometheus.yml reads it)."""
        write_json(self.stack_dir / "stack.json", asdict(self))
        write_json(self.stack_dir / "prometheus-targets.json", self.prometheus_targets())

    def prometheus_targets(self) -> list[dict[str, object]]:
        return [{"targets": [n.address], "labels": {"cluster": n.cluster, "node": n.name}} for n in self.nodes]

    @classmethod
    def load(cls, var_dir: Path) -> "StackSpec":
        path = Path(var_dir) / "stack" / "stack.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StackError(f"no stack under {var_dir} (missing {path}); start one with `make up`") from None
        except ValueError as exc:
            raise StackError(f"{path}: not valid JSON ({exc})") from None
        data["nodes"] = [NodeSpec(**n) for n in data.get("nodes", [])]
        return cls(**data)


def write_json(path: Path, doc: object) -> None:
    """Atomically (a reader sees the old file or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def maildir(var_dir: Path) -> Path:
    """The local mail server's Maildir: messages land in its new/ (`python -m deploy mail` reads them)."""
    return Path(var_dir) / "mail"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def new_spec(var_dir: Path, listen: str, admin: str, node_port_base: int, nodes_per_cluster: int,
             canary_percent: float, redis_url: str, demo_listen: str = DEFAULT_DEMO_LISTEN,
             mail_listen: str = DEFAULT_MAIL_LISTEN) -> StackSpec:
    """A fresh layout: blue-1..N and green-1..N on ports from node_port_base, validated."""
    parse_address(listen, "--listen")
    parse_address(admin, "--admin")
    parse_address(demo_listen, "--demo-listen")
    loopback_address(mail_listen, "--mail-listen")
    if listen == admin:
        raise StackError("--admin: must differ from --listen")
    if demo_listen in (listen, admin):
        raise StackError("--demo-listen: must differ from --listen and --admin")
    if mail_listen in (listen, admin, demo_listen):
        raise StackError("--mail-listen: must differ from --listen, --admin and --demo-listen")
    if not 1 <= nodes_per_cluster <= MAX_NODES:
        raise StackError(f"--nodes: must be between 1 and {MAX_NODES} (got {nodes_per_cluster})")
    if not 0 <= canary_percent <= 100:
        raise StackError(f"--canary-percent: must be between 0 and 100 (got {canary_percent})")
    if not 1024 <= node_port_base < 65000:
        raise StackError(f"--node-port-base: must be between 1024 and 64999 (got {node_port_base})")
    var = Path(var_dir).resolve()
    if any(ch.isspace() for ch in str(var)):
        raise StackError(f"--var-dir: may not contain whitespace (supervisord splits its include list on it): {var}")
    longest = var / "stack" / "supervisor.sock"
    if len(str(longest).encode()) > MAX_SOCKET_PATH:
        raise StackError(f"--var-dir: too deep for unix sockets ({longest} is over {MAX_SOCKET_PATH} bytes); "
                         "use a shorter path")
    spec = StackSpec(str(var), listen, admin, node_port_base, canary_percent, redis_url, demo_listen=demo_listen,
                     mail_listen=mail_listen)
    for cluster in CLUSTERS:
        for _ in range(nodes_per_cluster):
            spec.nodes.append(spec.next_node(cluster))
    return spec
