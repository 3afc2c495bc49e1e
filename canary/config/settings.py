"""Router configuration: each key with its default, the rule a value must meet and what it means (reading: loading.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A bad configuration value; the message names the key and the problem (exit status 2)."""


Rule = tuple[Callable[[Any], bool], str]   # (holds for a good value, what a good value is)
POSITIVE: Rule = (lambda v: v > 0, "> 0")
NON_NEGATIVE: Rule = (lambda v: v >= 0, ">= 0")
PERCENT: Rule = (lambda v: 0 <= v <= 100, "between 0 and 100")
AT_LEAST_ONE: Rule = (lambda v: v >= 1, ">= 1")


def setting(default: Any, rule: Rule | None = None, doc: str = "", old: str | None = None) -> Any:
    """One configuration key: its default, the rule a value must meet and what it means, in one place
    (validate() applies the rule, tests/canary/test_config_validation.py ties the defaults to docs/router.md).
    `old` is a former name still accepted, with a deprecation line."""
    return field(default=default, metadata={"rule": rule, "doc": doc, "old": old})


@dataclass(slots=True)
class NodeConfig:
    name: str
    host: str
    port: int
    weight: int = setting(1, AT_LEAST_ONE, "its share of the cluster's requests, relative to the other nodes'")


@dataclass(slots=True)
class ClusterConfig:
    name: str
    nodes: list[NodeConfig]
    max_concurrent: int = setting(1024, AT_LEAST_ONE, "active requests per cluster")
    max_queue: int = setting(256, NON_NEGATIVE, "waiting requests per cluster")
    dns: tuple[str, int] | None = None   # discover nodes: every address HOST resolves to (canary/discovery/dns_discovery.py)
    dns_refresh: float = setting(5.0, (lambda v: 0.1 <= v <= 3600, "between 0.1 and 3600 seconds"),
                                 "seconds between resolutions (with dns)")


@dataclass(slots=True)
class HealthCheckConfig:
    """Defaults detect a dead node in interval*unhealthy_threshold + timeout <= 1 s (0.25*2 + 0.5)."""
    path: str = setting("/readyz", (lambda v: v.startswith("/"), "a path starting with '/'"), "GET on every node")
    interval: float = setting(0.25, POSITIVE, "seconds between checks of one node")
    timeout: float = setting(0.5, (lambda v: 0 < v <= 30, "> 0 and at most 30"), "a slower answer is a failure")
    unhealthy_threshold: int = setting(2, POSITIVE, "failures in a row that take a node out", old="fall")
    healthy_threshold: int = setting(3, POSITIVE, "successes in a row that bring it back", old="rise")


@dataclass(slots=True)
class OutlierConfig:
    consecutive_5xx: int = setting(5, POSITIVE, "5xx answers in a row that eject a node")
    base_ejection_time: float = setting(10.0, POSITIVE, "seconds x number of ejections")
    max_ejection_time: float = setting(300.0, POSITIVE, "cap of one ejection")
    max_ejection_percent: int = setting(50, PERCENT, "of a cluster's nodes (at least one can always be ejected)")


@dataclass(slots=True)
class TimeoutConfig:
    connect: float = setting(1.0, POSITIVE, "TCP connect to a node")
    upstream: float = setting(30.0, POSITIVE, "the node answers (headers) within this once the request body is in")
    body_idle: float = setting(10.0, POSITIVE, "a client body stalled this long gets 408 (the node is not blamed)")
    body_read: float = setting(10.0, POSITIVE, "a buffered (small) body arrives whole within this, else 408")
    header_read: float = setting(10.0, POSITIVE, "the whole request head within this (slowloris)")
    idle: float = setting(60.0, POSITIVE, "keep-alive idle time of a client connection")
    total: float = setting(300.0, POSITIVE, "the whole exchange including body streaming")
    upstream_idle: float = setting(4.0, POSITIVE, "pooled idle node connections closed before the node does")


@dataclass(slots=True)
class LimitsConfig:
    max_header_bytes: int = setting(32 * 1024, POSITIVE, "request head size; 431 beyond")
    max_body_bytes: int = setting(64 * 1024, NON_NEGATIVE, "413 beyond; what a node accepts")
    buffer_body_bytes: int = setting(64 * 1024, NON_NEGATIVE, "bodies up to this are read whole before a node")
    max_connections_per_client: int = setting(64, NON_NEGATIVE, "per client address, 429 beyond (0 = no cap)")
    max_response_header_bytes: int = setting(64 * 1024, POSITIVE, "a node's response head beyond this is a 502")
    max_response_headers: int = setting(100, POSITIVE, "more response headers than this is a 502")
    queue_timeout: float = setting(1.0, POSITIVE, "seconds a request may wait for a concurrency slot")
    retry_after: int = setting(1, NON_NEGATIVE, "Retry-After of a 503")


@dataclass(slots=True)
class PinConfig:
    """The keys are secrets, so they come from the environment or files (canary/config/secret.py), never from here."""
    cookie_name: str = setting("canary_pin", (lambda v: bool(v) and all(c.isalnum() or c in "-_" for c in v),
                                              "letters, digits, '-' or '_'"), "the pin cookie")
    ttl: int = setting(30 * 24 * 3600, POSITIVE, "seconds; renewed past half of it")
    secure: bool = setting(False, None, "add Secure when TLS terminates in front")
    mac: str = setting("blake2s", (lambda v: v in ("blake2s", "hmac-sha256"), "blake2s or hmac-sha256"),
                       "signs new pins; a pin signed with the other is accepted and re-issued")


@dataclass(slots=True)
class ShareConfig:
    initial_percent: float = setting(0.0, PERCENT, "the canary's share when no state exists yet")
    slow_start_window: float = setting(30.0, NON_NEGATIVE, "seconds a healed cluster takes to get its share back")
    slow_start_min_percent: float = setting(10.0, PERCENT, "of its share, at the start of slow start")


@dataclass(slots=True)
class RetryConfig:
    budget_percent: float = setting(20.0, PERCENT, "concurrent retries as a share of active requests")
    min_concurrent: int = setting(3, NON_NEGATIVE, "retries always allowed at once")
    max_attempts: int = setting(4, POSITIVE, "attempts per request, the first included")


@dataclass(slots=True)
class AnalysisConfig:
    """The gates at the end of each hold of a ramp plan (canary/automation/analysis.py, docs/router.md "Ramp plans")."""
    min_success_percent: float = setting(99.0, PERCENT, "canary success rate below this fails (Flagger's gate)")
    latency_tolerance: float = setting(1.2, (lambda v: v >= 1.0, ">= 1.0"), "the canary may be this much slower")
    confidence: float = setting(0.95, (lambda v: 0.5 <= v < 1.0, "at least 0.5 and below 1"),
                                "Mann-Whitney U, one-sided: fail when p < 1 - confidence")
    min_samples: int = setting(100, (lambda v: v >= 5, ">= 5"), "answers per side, else inconclusive")
    max_extensions: int = setting(2, NON_NEGATIVE, "inconclusive holds extended this often, then the plan pauses")


@dataclass(slots=True)
class ProactiveShiftConfig:
    """Moving traffic away from a degraded (not dead) cluster, in bounded steps (canary/automation/proactive_shift.py)."""
    enabled: bool = setting(True, None, "false turns it off")
    window: float = setting(30.0, POSITIVE, "seconds of records judged at each look")
    interval: float = setting(5.0, POSITIVE, "seconds between looks")
    sustain: int = setting(3, AT_LEAST_ONE, "looks in a row degraded before a move away")
    recover_sustain: int = setting(6, AT_LEAST_ONE, "looks in a row recovered before a move back")
    step_percent: float = setting(25.0, (lambda v: 0 < v <= 100, "above 0 and at most 100"), "per move")
    max_percent: float = setting(50.0, (lambda v: 0 <= v <= 90,
                                        "between 0 and 90 (some traffic must stay to judge recovery by)"),
                                 "never more without a human")
    error_margin_percent: float = setting(5.0, (lambda v: 0 < v <= 100, "above 0 and at most 100"),
                                          "degraded: error rate this many points above the other's ...")
    latency_ratio: float = setting(3.0, (lambda v: v > 1.0, "> 1"), "... or p99 this many times the other's ...")
    min_latency_gap: float = setting(0.1, NON_NEGATIVE, "... and at least this many seconds above it")
    min_samples: int = setting(50, AT_LEAST_ONE, "answers per cluster per window, else no judgement")


@dataclass(slots=True)
class SloConfig:
    """The service-level objective each cluster is held to; a breach (and its end) is an alert (canary/automation/slo.py)."""
    enabled: bool = setting(True, None, "false turns it off")
    success_percent: float = setting(99.0, (lambda v: 0 < v <= 100, "above 0 and at most 100"),
                                     "answers below 500 (failed attempts included)")
    p99_ms: float = setting(1000.0, POSITIVE, "p99 latency at the router")
    window: float = setting(60.0, POSITIVE, "seconds judged, every proactive_shift.interval")
    min_samples: int = setting(50, AT_LEAST_ONE, "answers in the window, else no judgement")


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")   # what a copy may repeat: never a method that writes (RFC 9110 §9.2.1)


@dataclass(slots=True)
class MirrorConfig:
    """Shadow traffic (canary/dataplane/mirror.py): which requests may be copied, and the copies' bounds."""
    methods: tuple[str, ...] = setting(("GET", "HEAD"), (lambda v: bool(v) and all(m in SAFE_METHODS for m in v),
                                                         "a list of GET, HEAD or OPTIONS"), "methods copied")
    paths: tuple[str, ...] = setting(("/.well-known/openid-configuration", "/oidc/.well-known/openid-configuration",
                                      "/oidc/jwks/", "/login/"),
                                     (lambda v: all(isinstance(p, str) and p.startswith("/") for p in v),
                                      "a list of paths starting with '/'"), "exact paths copied (any query)")
    max_in_flight: int = setting(64, AT_LEAST_ONE, "copies unanswered at once; more are dropped")
    max_router_requests: int = setting(512, AT_LEAST_ONE, "client requests in flight above which nothing is copied")
    timeout: float = setting(5.0, POSITIVE, "seconds a copy may take before it is cut (and counted failed)")


@dataclass(slots=True)
class Config:
    clusters: list[ClusterConfig]
    listen: tuple[str, int] = ("127.0.0.1", 8000)
    admin: tuple[str, int] = ("127.0.0.1", 8001)
    workers: int = setting(1, POSITIVE, "processes sharing `listen` (admin and metrics in worker 0)")
    redis: str | None = None
    state_file: str = "var/canary-state.json"
    access_log: bool = setting(True, None, "one line per request on stdout")
    public_origin: str | None = setting(None, (lambda v: v is None or _is_origin(v), "an origin such as "
                                               "https://login.example.com (scheme, host, optional port, no path)"),
                                        "where clients reach the router: tester links point there "
                                        "(default http:// + listen)")
    trusted_hops: int = setting(0, NON_NEGATIVE, "X-Forwarded-For hops to trust (only from trusted_proxies)")
    # peers whose X-Forwarded-* headers are honoured (with trusted_hops); anyone else is the client itself
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    balancing: str = setting("least_request", (lambda v: v in ("least_request", "round_robin"),
                                               "'least_request' or 'round_robin'"), "how a node is picked")
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
    mirror: MirrorConfig = field(default_factory=MirrorConfig)


def _is_origin(value: object) -> bool:
    """scheme://host[:port] and nothing else (RFC 6454 §4), for a URL the router prints."""
    if not isinstance(value, str):
        return False
    u = urlsplit(value)
    try:
        u.port
    except ValueError:
        return False
    return (u.scheme in ("http", "https") and bool(u.hostname) and u.path in ("", "/") and not u.query
            and not u.fragment and not u.username and not u.password)


_SECTIONS = {
    "health_check": HealthCheckConfig, "outlier_detection": OutlierConfig, "timeouts": TimeoutConfig,
    "limits": LimitsConfig, "pin": PinConfig, "share": ShareConfig, "retry": RetryConfig,
    "analysis": AnalysisConfig, "proactive_shift": ProactiveShiftConfig, "slo": SloConfig,
    "mirror": MirrorConfig,
}
