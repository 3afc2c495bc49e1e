"""Reading the router's configuration: TOML tables and command-line values into a checked Config.

Every problem is one ConfigError naming the key and what a good value is (the rules live with the keys, in
settings.py); `serve` prints it as one line and exits 2.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import tomllib
from typing import Any

from canary.config.settings import (_SECTIONS, ClusterConfig, Config, ConfigError, NodeConfig)

log = logging.getLogger("canary.config")


def parse_hostport(value: Any, key: str) -> tuple[str, int]:
    """Parse HOST:PORT (IPv6 as [::1]:80); the key is used in the error message."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    host, _, port_s = value.rpartition(":")
    host = host.strip("[]")
    if not host:
        raise ConfigError(f"{key}: missing host in {value!r}")
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(f"{key}: port must be an integer in {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port out of range in {value!r}")
    return host, port


def parse_cluster_arg(value: str) -> ClusterConfig:
    """Parse the quick-mode form NAME=HOST:PORT[,HOST:PORT...]."""
    name, sep, nodes = value.partition("=")
    if not sep or not name or not nodes:
        raise ConfigError(f"--cluster: expected NAME=HOST:PORT[,HOST:PORT...], got {value!r}")
    check_name(name, "--cluster")
    out = []
    for i, addr in enumerate(nodes.split(",")):
        host, port = parse_hostport(addr.strip(), f"--cluster {name}")
        out.append(NodeConfig(name=f"{name}-{i + 1}", host=host, port=port))
    return ClusterConfig(name=name, nodes=out)


def check_name(name: str, key: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(f"{key}: name {name!r} must be letters, digits, '-', '_' or '.'")




def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check a TOML value against the type of the dataclass default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    return value


def _section(name: str, cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a table")
    obj = cls()
    fields = dataclasses.fields(cls)
    renamed = {f.metadata["old"]: f.name for f in fields if f.metadata.get("old")}
    known = {f.name for f in fields}
    for k, v in data.items():
        if k in renamed:
            if renamed[k] in data:
                raise ConfigError(f"{name}.{k}: give {name}.{renamed[k]} only (it replaces {k})")
            log.warning("%s.%s is deprecated: use %s.%s", name, k, name, renamed[k])
            k = renamed[k]
        elif k not in known:
            raise ConfigError(f"{name}.{k}: unknown key")
        setattr(obj, k, _coerce(f"{name}.{k}", v, getattr(obj, k)))
    return obj


_CLUSTER_KEYS = frozenset(f.name for f in dataclasses.fields(ClusterConfig))


def _cluster_from_toml(i: int, data: Any) -> ClusterConfig:
    key = f"clusters[{i}]"
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: expected a table")
    for k in data:
        if k not in _CLUSTER_KEYS:
            raise ConfigError(f"{key}.{k}: unknown key")
    name = data.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{key}.name: required string")
    check_name(name, f"{key}.name")
    if "dns" in data:
        c = _dns_cluster(key, name, data)
    else:
        if "dns_refresh" in data:
            raise ConfigError(f"{key}.dns_refresh: only with dns")
        c = ClusterConfig(name=name, nodes=_nodes_from_toml(key, name, data.get("nodes")))
    c.max_concurrent = _coerce(f"{key}.max_concurrent", data.get("max_concurrent", c.max_concurrent), 1)
    c.max_queue = _coerce(f"{key}.max_queue", data.get("max_queue", c.max_queue), 1)
    return c   # the values' rules: validate()


def _dns_cluster(key: str, name: str, data: dict[str, Any]) -> ClusterConfig:
    """A cluster whose nodes are the addresses a DNS name resolves to (canary/discovery/dns_discovery.py)."""
    if "nodes" in data:
        raise ConfigError(f"{key}.dns: give either nodes or dns, not both")
    c = ClusterConfig(name=name, nodes=[], dns=parse_hostport(data["dns"], f"{key}.dns"))
    if c.dns is not None and c.dns[1] == 0:
        raise ConfigError(f"{key}.dns: port must be 1..65535")
    c.dns_refresh = _coerce(f"{key}.dns_refresh", data.get("dns_refresh", c.dns_refresh), c.dns_refresh)
    return c


def _nodes_from_toml(key: str, name: str, nodes_raw: Any) -> list[NodeConfig]:
    if not isinstance(nodes_raw, list) or not nodes_raw:
        raise ConfigError(f"{key}.nodes: required non-empty list (or dns = \"HOST:PORT\")")
    nodes = []
    for j, n in enumerate(nodes_raw):
        nkey = f"{key}.nodes[{j}]"
        if isinstance(n, str):
            host, port = parse_hostport(n, nkey)
            nodes.append(NodeConfig(name=f"{name}-{j + 1}", host=host, port=port))
            continue
        if not isinstance(n, dict):
            raise ConfigError(f"{nkey}: expected \"HOST:PORT\" or a table")
        for k in n:
            if k not in ("name", "address", "weight"):
                raise ConfigError(f"{nkey}.{k}: unknown key")
        host, port = parse_hostport(n.get("address"), f"{nkey}.address")
        nname = n.get("name", f"{name}-{j + 1}")
        check_name(nname, f"{nkey}.name")
        weight = _coerce(f"{nkey}.weight", n.get("weight", 1), 1)
        nodes.append(NodeConfig(name=nname, host=host, port=port, weight=weight))
    return nodes


def load_toml(path: str) -> Config:
    """Read a TOML config file; raises ConfigError naming the key on any problem."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config: file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config: {path}: invalid TOML: {e}") from None
    return from_dict(data)


def from_dict(data: dict[str, Any]) -> Config:
    clusters_raw = data.get("clusters")
    if not isinstance(clusters_raw, list):
        raise ConfigError("clusters: required array of tables ([[clusters]])")
    cfg = Config(clusters=[_cluster_from_toml(i, c) for i, c in enumerate(clusters_raw)])
    for k, v in data.items():
        if k == "clusters":
            continue
        if k in _SECTIONS:
            setattr(cfg, k, _section(k, _SECTIONS[k], v))
        elif k in ("listen", "admin"):
            setattr(cfg, k, parse_hostport(v, k))
        elif k == "redis":
            if not isinstance(v, str) or not v.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(f"redis: expected a redis:// URL, got {v!r}")
            cfg.redis = v
        elif k == "public_origin":
            if not isinstance(v, str):
                raise ConfigError(f"public_origin: expected a string such as \"https://login.example.com\", got {v!r}")
            cfg.public_origin = v.rstrip("/")
        elif k in ("workers", "trusted_hops", "state_file", "access_log", "balancing"):
            setattr(cfg, k, _coerce(k, v, getattr(cfg, k)))
        elif k == "trusted_proxies":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ConfigError(f"trusted_proxies: expected a list of CIDR strings, got {v!r}")
            cfg.trusted_proxies = v
        else:
            raise ConfigError(f"{k}: unknown key")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks shared by TOML and quick mode."""
    if len(cfg.clusters) != 2:
        raise ConfigError(f"clusters: exactly two clusters are required (stable, canary), got {len(cfg.clusters)}")
    if cfg.clusters[0].name == cfg.clusters[1].name:
        raise ConfigError(f"clusters: duplicate cluster name {cfg.clusters[0].name!r}")
    seen: set[str] = set()
    for c in cfg.clusters:
        for n in c.nodes:
            if n.name in seen or n.name in (cfg.clusters[0].name, cfg.clusters[1].name):
                raise ConfigError(f"clusters.{c.name}.nodes: duplicate name {n.name!r}")
            seen.add(n.name)
    tables: list[tuple[str, Any]] = [("", cfg)] + [(f"{name}.", getattr(cfg, name)) for name in _SECTIONS]
    for i, c in enumerate(cfg.clusters):
        tables += [(f"clusters[{i}].", c)] + [(f"clusters[{i}].nodes[{j}].", n) for j, n in enumerate(c.nodes)]
    for prefix, obj in tables:
        for f in dataclasses.fields(obj):
            rule = f.metadata.get("rule")
            value = getattr(obj, f.name)
            if rule is not None and not rule[0](value):
                old = f" ({prefix}{f.metadata['old']})" if f.metadata.get("old") else ""
                raise ConfigError(f"{prefix}{f.name}{old}: must be {rule[1]} (got {value!r})")
    proxy_networks(cfg.trusted_proxies)


def proxy_networks(cidrs: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Parse `trusted_proxies` (a bare address is a /32 or /128); one message names the key and the bad entry."""
    out = []
    for c in cidrs:
        try:
            out.append(ipaddress.ip_network(c.strip(), strict=True))
        except ValueError as e:
            raise ConfigError(f"trusted_proxies: {c!r} is not a CIDR such as 10.0.0.0/8 ({e})") from None
    return out


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
