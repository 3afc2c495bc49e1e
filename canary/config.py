"""Router configuration: dataclasses, TOML/CLI parsing and validation with one clear error per problem."""
from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from dataclasses import dataclass, field
from typing import Any


class ConfigError(Exception):
    """A bad configuration value; the message names the key and the problem (exit status 2)."""


@dataclass(slots=True)
class NodeConfig:
    name: str
    host: str
    port: int
    weight: int = 1


@dataclass(slots=True)
class ClusterConfig:
    name: str
    nodes: list[NodeConfig]
    max_concurrent: int = 1024
    max_queue: int = 256
    dns: tuple[str, int] | None = None   # discover nodes: every address HOST resolves to (canary/dns_discovery.py)
    dns_refresh: float = 5.0


@dataclass(slots=True)
class HealthCheckConfig:
    """Defaults detect a dead node in interval*fall + timeout <= 1 s (0.25*2 + 0.5)."""
    path: str = "/readyz"
    interval: float = 0.25
    timeout: float = 0.5
    fall: int = 2
    rise: int = 3


@dataclass(slots=True)
class OutlierConfig:
    consecutive_5xx: int = 5
    base_ejection_time: float = 10.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 50


@dataclass(slots=True)
class TimeoutConfig:
    connect: float = 1.0
    upstream: float = 30.0       # time for the node to answer (headers) after the request body is complete
    body_idle: float = 10.0      # a client request body that stalls this long gets 408 (the node is not blamed)
    body_read: float = 10.0      # a buffered (small) request body must arrive whole within this, else 408
    header_read: float = 10.0    # slowloris guard: whole request head must arrive within this
    idle: float = 60.0           # keep-alive idle time of a client connection
    total: float = 300.0         # whole exchange including body streaming
    upstream_idle: float = 4.0   # pooled idle connections closed before the node does (gunicorn keepalive 5 s)


@dataclass(slots=True)
class LimitsConfig:
    max_header_bytes: int = 32 * 1024
    max_body_bytes: int = 64 * 1024            # what a node accepts (Django DATA_UPLOAD_MAX_MEMORY_SIZE)
    buffer_body_bytes: int = 64 * 1024         # bodies up to this are read whole before a node is chosen
    max_connections_per_client: int = 64       # concurrent connections per client address (0 = no cap)
    max_response_header_bytes: int = 64 * 1024  # a node's response head beyond this is a 502
    max_response_headers: int = 100
    queue_timeout: float = 1.0
    retry_after: int = 1


@dataclass(slots=True)
class PinConfig:
    """The keys are secrets, so they come from the environment or files (canary/secret.py), never from here."""
    cookie_name: str = "canary_pin"
    ttl: int = 30 * 24 * 3600
    secure: bool = False


@dataclass(slots=True)
class ShareConfig:
    initial_percent: float = 0.0
    slow_start_window: float = 30.0
    slow_start_min_percent: float = 10.0


@dataclass(slots=True)
class RetryConfig:
    budget_percent: float = 20.0
    min_concurrent: int = 3
    max_attempts: int = 4


@dataclass(slots=True)
class AnalysisConfig:
    """The gates at the end of each hold of a ramp plan (canary/analysis.py, docs/router.md "Ramp plans")."""
    min_success_percent: float = 99.0   # Flagger's default request-success-rate gate
    latency_tolerance: float = 1.2      # the canary may be this much slower than stable before it fails
    confidence: float = 0.95            # Mann-Whitney U, one-sided: fail when p < 1 - confidence
    min_samples: int = 100              # answers per cluster in the window; fewer -> the step is extended
    max_extensions: int = 2             # inconclusive this many times more -> the plan pauses with an alert


@dataclass(slots=True)
class ProactiveShiftConfig:
    """Moving traffic away from a degraded (not dead) cluster, in bounded steps (canary/proactive_shift.py)."""
    enabled: bool = True
    window: float = 30.0                # seconds of records judged at each look
    interval: float = 5.0               # seconds between looks
    sustain: int = 3                    # looks in a row degraded before a move away
    recover_sustain: int = 6            # looks in a row recovered before a move back
    step_percent: float = 25.0          # of the cluster's traffic, per move
    max_percent: float = 50.0           # never more without a human (it keeps traffic to judge recovery by)
    error_margin_percent: float = 5.0   # degraded: error rate this many points above the other's ...
    latency_ratio: float = 3.0          # ... or p99 this many times the other's ...
    min_latency_gap: float = 0.1        # ... and at least this many seconds above it
    min_samples: int = 50               # answers per cluster per window, else no judgement


@dataclass(slots=True)
class SloConfig:
    """The service-level objective each cluster is held to; a breach (and its end) is an alert (canary/slo.py)."""
    enabled: bool = True
    success_percent: float = 99.0       # answers below 500 (failed attempts included)
    p99_ms: float = 1000.0              # p99 latency at the router
    window: float = 60.0                # seconds judged, every proactive_shift.interval
    min_samples: int = 50               # answers in the window, else no judgement


@dataclass(slots=True)
class Config:
    clusters: list[ClusterConfig]
    listen: tuple[str, int] = ("127.0.0.1", 8000)
    admin: tuple[str, int] = ("127.0.0.1", 8001)
    workers: int = 1
    redis: str | None = None
    state_file: str = "var/canary-state.json"
    access_log: bool = True
    trusted_hops: int = 0
    # peers whose X-Forwarded-* headers are honoured (with trusted_hops); anyone else is the client itself
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    balancing: str = "least_request"
    health_check: HealthCheckConfig = field(default_factory=HealthCheckConfig)
    outlier_detection: OutlierConfig = field(default_factory=OutlierConfig)
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    pin: PinConfig = field(default_factory=PinConfig)
    share: ShareConfig = field(default_factory=ShareConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    proactive_shift: ProactiveShiftConfig = field(default_factory=ProactiveShiftConfig)
    slo: SloConfig = field(default_factory=SloConfig)


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
    _check_name(name, "--cluster")
    out = []
    for i, addr in enumerate(nodes.split(",")):
        host, port = parse_hostport(addr.strip(), f"--cluster {name}")
        out.append(NodeConfig(name=f"{name}-{i + 1}", host=host, port=port))
    return ClusterConfig(name=name, nodes=out)


def _check_name(name: str, key: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(f"{key}: name {name!r} must be letters, digits, '-', '_' or '.'")


_SECTIONS = {
    "health_check": HealthCheckConfig, "outlier_detection": OutlierConfig, "timeouts": TimeoutConfig,
    "limits": LimitsConfig, "pin": PinConfig, "share": ShareConfig, "retry": RetryConfig,
    "analysis": AnalysisConfig, "proactive_shift": ProactiveShiftConfig, "slo": SloConfig,
}


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
    return value


def _section(name: str, cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a table")
    obj = cls()
    for k, v in data.items():
        if k not in cls.__dataclass_fields__:
            raise ConfigError(f"{name}.{k}: unknown key")
        setattr(obj, k, _coerce(f"{name}.{k}", v, getattr(obj, k)))
    return obj


def _cluster_from_toml(i: int, data: Any) -> ClusterConfig:
    key = f"clusters[{i}]"
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: expected a table")
    for k in data:
        if k not in ("name", "nodes", "max_concurrent", "max_queue", "dns", "dns_refresh"):
            raise ConfigError(f"{key}.{k}: unknown key")
    name = data.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{key}.name: required string")
    _check_name(name, f"{key}.name")
    if "dns" in data:
        c = _dns_cluster(key, name, data)
    else:
        if "dns_refresh" in data:
            raise ConfigError(f"{key}.dns_refresh: only with dns")
        c = ClusterConfig(name=name, nodes=_nodes_from_toml(key, name, data.get("nodes")))
    c.max_concurrent = _coerce(f"{key}.max_concurrent", data.get("max_concurrent", c.max_concurrent), 1)
    c.max_queue = _coerce(f"{key}.max_queue", data.get("max_queue", c.max_queue), 1)
    return c


def _dns_cluster(key: str, name: str, data: dict[str, Any]) -> ClusterConfig:
    """A cluster whose nodes are the addresses a DNS name resolves to (canary/dns_discovery.py)."""
    if "nodes" in data:
        raise ConfigError(f"{key}.dns: give either nodes or dns, not both")
    c = ClusterConfig(name=name, nodes=[], dns=parse_hostport(data["dns"], f"{key}.dns"))
    if c.dns is not None and c.dns[1] == 0:
        raise ConfigError(f"{key}.dns: port must be 1..65535")
    c.dns_refresh = _coerce(f"{key}.dns_refresh", data.get("dns_refresh", c.dns_refresh), c.dns_refresh)
    if not 0.1 <= c.dns_refresh <= 3600:
        raise ConfigError(f"{key}.dns_refresh: must be between 0.1 and 3600 seconds (got {c.dns_refresh})")
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
        _check_name(nname, f"{nkey}.name")
        weight = _coerce(f"{nkey}.weight", n.get("weight", 1), 1)
        if weight < 1:
            raise ConfigError(f"{nkey}.weight: must be >= 1")
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
        if c.max_concurrent < 1:
            raise ConfigError(f"clusters.{c.name}.max_concurrent: must be >= 1")
        if c.max_queue < 0:
            raise ConfigError(f"clusters.{c.name}.max_queue: must be >= 0")
        for n in c.nodes:
            if n.name in seen or n.name in (cfg.clusters[0].name, cfg.clusters[1].name):
                raise ConfigError(f"clusters.{c.name}.nodes: duplicate name {n.name!r}")
            seen.add(n.name)
    positive = {
        "health_check.interval": cfg.health_check.interval, "health_check.timeout": cfg.health_check.timeout,
        "timeouts.connect": cfg.timeouts.connect, "timeouts.upstream": cfg.timeouts.upstream,
        "timeouts.body_idle": cfg.timeouts.body_idle, "timeouts.body_read": cfg.timeouts.body_read,
        "limits.max_response_header_bytes": cfg.limits.max_response_header_bytes,
        "limits.max_response_headers": cfg.limits.max_response_headers,
        "timeouts.header_read": cfg.timeouts.header_read, "timeouts.idle": cfg.timeouts.idle,
        "timeouts.total": cfg.timeouts.total, "timeouts.upstream_idle": cfg.timeouts.upstream_idle,
        "outlier_detection.base_ejection_time": cfg.outlier_detection.base_ejection_time,
        "outlier_detection.max_ejection_time": cfg.outlier_detection.max_ejection_time,
        "limits.max_header_bytes": cfg.limits.max_header_bytes, "limits.queue_timeout": cfg.limits.queue_timeout,
        "health_check.fall": cfg.health_check.fall, "health_check.rise": cfg.health_check.rise,
        "outlier_detection.consecutive_5xx": cfg.outlier_detection.consecutive_5xx,
        "pin.ttl": cfg.pin.ttl, "workers": cfg.workers, "retry.max_attempts": cfg.retry.max_attempts,
    }
    for k, v in positive.items():
        if v <= 0:
            raise ConfigError(f"{k}: must be > 0 (got {v})")
    nonneg = {"limits.max_body_bytes": cfg.limits.max_body_bytes, "trusted_hops": cfg.trusted_hops,
              "share.slow_start_window": cfg.share.slow_start_window, "retry.min_concurrent": cfg.retry.min_concurrent,
              "limits.retry_after": cfg.limits.retry_after, "limits.buffer_body_bytes": cfg.limits.buffer_body_bytes,
              "limits.max_connections_per_client": cfg.limits.max_connections_per_client}
    for k, v in nonneg.items():
        if v < 0:
            raise ConfigError(f"{k}: must be >= 0 (got {v})")
    for k, v in {"share.initial_percent": cfg.share.initial_percent,
                 "share.slow_start_min_percent": cfg.share.slow_start_min_percent,
                 "outlier_detection.max_ejection_percent": cfg.outlier_detection.max_ejection_percent,
                 "retry.budget_percent": cfg.retry.budget_percent}.items():
        if not 0 <= v <= 100:
            raise ConfigError(f"{k}: must be between 0 and 100 (got {v})")
    if cfg.health_check.timeout > 30 or not cfg.health_check.path.startswith("/"):
        raise ConfigError("health_check.path: must start with '/'" if not cfg.health_check.path.startswith("/")
                          else "health_check.timeout: must be <= 30")
    if cfg.balancing not in ("least_request", "round_robin"):
        raise ConfigError(f"balancing: must be 'least_request' or 'round_robin' (got {cfg.balancing!r})")
    if not cfg.pin.cookie_name or not all(c.isalnum() or c in "-_" for c in cfg.pin.cookie_name):
        raise ConfigError(f"pin.cookie_name: invalid cookie name {cfg.pin.cookie_name!r}")
    proxy_networks(cfg.trusted_proxies)
    _validate_automation(cfg.analysis, cfg.proactive_shift, cfg.slo)


def _validate_automation(a: AnalysisConfig, p: ProactiveShiftConfig, slo: SloConfig) -> None:
    """Ranges of the analysis and proactive-shift keys: (key, value, holds, what it must be)."""
    rules = [
        ("analysis.min_success_percent", a.min_success_percent, 0 <= a.min_success_percent <= 100, "between 0 and 100"),
        ("analysis.latency_tolerance", a.latency_tolerance, a.latency_tolerance >= 1.0, ">= 1.0"),
        ("analysis.confidence", a.confidence, 0.5 <= a.confidence < 1.0, "at least 0.5 and below 1"),
        ("analysis.min_samples", a.min_samples, a.min_samples >= 5, ">= 5"),
        ("analysis.max_extensions", a.max_extensions, a.max_extensions >= 0, ">= 0"),
        ("proactive_shift.window", p.window, p.window > 0, "> 0"),
        ("proactive_shift.interval", p.interval, p.interval > 0, "> 0"),
        ("proactive_shift.sustain", p.sustain, p.sustain >= 1, ">= 1"),
        ("proactive_shift.recover_sustain", p.recover_sustain, p.recover_sustain >= 1, ">= 1"),
        ("proactive_shift.step_percent", p.step_percent, 0 < p.step_percent <= 100, "above 0 and at most 100"),
        ("proactive_shift.max_percent", p.max_percent, 0 <= p.max_percent <= 90,
         "between 0 and 90 (some traffic must stay to judge recovery by)"),
        ("proactive_shift.error_margin_percent", p.error_margin_percent, 0 < p.error_margin_percent <= 100,
         "above 0 and at most 100"),
        ("proactive_shift.latency_ratio", p.latency_ratio, p.latency_ratio > 1.0, "> 1"),
        ("proactive_shift.min_latency_gap", p.min_latency_gap, p.min_latency_gap >= 0, ">= 0"),
        ("proactive_shift.min_samples", p.min_samples, p.min_samples >= 1, ">= 1"),
        ("slo.success_percent", slo.success_percent, 0 < slo.success_percent <= 100, "above 0 and at most 100"),
        ("slo.p99_ms", slo.p99_ms, slo.p99_ms > 0, "> 0"),
        ("slo.window", slo.window, slo.window > 0, "> 0"),
        ("slo.min_samples", slo.min_samples, slo.min_samples >= 1, ">= 1"),
    ]
    for key, value, holds, rule in rules:
        if not holds:
            raise ConfigError(f"{key}: must be {rule} (got {value})")


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
