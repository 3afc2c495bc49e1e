"""Command line: `serve` (the router) and the ops verbs status/ramp/promote/rollback/drain/undrain/nodes/plan/alerts/
sign-out-all/tester-link/mirror."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from typing import Any, NoReturn

from canary.cli import plan as plan_cli
from canary.cli import tester_link
from canary.config import secret
from canary.config.loading import load_toml, parse_cluster_arg, parse_hostport, validate
from canary.config.settings import Config, ConfigError

DEFAULT_ADMIN = "http://127.0.0.1:8001"


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument prints exactly one line (no usage dump) and exits 2."""

    def error(self, message: str) -> NoReturn:
        print(f"canary: error: {message}", file=sys.stderr)
        sys.exit(2)


class CommandLine(Parser):
    """The top-level parser. `--admin` (the admin API) is the one option every verb has,
    so it is accepted before the verb as well as after it, where people put it; absent, each verb's default."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        if not hasattr(parsed, "admin"):
            parsed.admin = None if getattr(parsed, "cmd", None) == "serve" else DEFAULT_ADMIN
        return parsed, rest


ADMIN_HELP = f"the admin API's URL (default {DEFAULT_ADMIN}); also accepted before the verb"


def die(message: str, code: int = 2) -> NoReturn:
    print(f"canary: error: {message}", file=sys.stderr)
    sys.exit(code)


def build_parser() -> Parser:
    p = CommandLine(prog="canary", description="Canary router for twin clusters of the login service.")
    p.add_argument("--admin", default=argparse.SUPPRESS, metavar="URL|HOST:PORT",
                   help="the admin API, for any verb: its URL, or for serve the HOST:PORT it listens on")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    s = sub.add_parser("serve", help="run the router")
    s.add_argument("--config", help="TOML configuration file")
    s.add_argument("--listen", help="HOST:PORT for client traffic (default 127.0.0.1:8000)")
    s.add_argument("--admin", default=argparse.SUPPRESS,
                   help="HOST:PORT for the admin API (default 127.0.0.1:8001); also accepted before the verb")
    s.add_argument("--cluster", action="append", default=[], metavar="NAME=HOST:PORT[,HOST:PORT...]",
                   help="quick mode: first = stable, second = canary")
    s.add_argument("--redis", help="redis:// URL for shared state (default: env REDIS_URL)")
    s.add_argument("--state", help="state file when no Redis (default var/canary-state.json)")
    s.add_argument("--workers", type=int, help="processes sharing the port with SO_REUSEPORT")
    s.add_argument("--trusted-hops", type=int, help="X-Forwarded-For hops to trust (default 0)")
    s.add_argument("--trusted-proxy", action="append", metavar="CIDR",
                   help="peer range whose X-Forwarded-* is honoured (repeatable; replaces trusted_proxies, "
                        "default 127.0.0.0/8 and ::1/128); --trusted-proxy none trusts no peer")
    s.add_argument("--no-access-log", action="store_true", help="disable the stdout access log")
    s.add_argument("--initial-percent", type=float, help="canary share when no state exists yet")
    s.add_argument("--public-origin", metavar="URL", help="where clients reach the router, e.g. "
                   "https://login.example.com: tester links point there (default http:// + --listen)")
    for name, helptext in (("status", "show routing state"), ("promote", "canary -> 100%% and stable"),
                           ("rollback", "canary share -> 0%%")):
        v = sub.add_parser(name, help=helptext)
        v.add_argument("--admin", default=argparse.SUPPRESS, help=ADMIN_HELP)
        if name == "status":
            v.add_argument("--json", action="store_true", help="print the raw JSON")
    v = sub.add_parser("ramp", help="set the canary share")
    v.add_argument("percent", metavar="PERCENT")
    v.add_argument("--admin", default=argparse.SUPPRESS, help=ADMIN_HELP)
    for name in ("drain", "undrain"):
        v = sub.add_parser(name, help=f"{name} a cluster or node")
        v.add_argument("target", metavar="CLUSTER|NODE")
        v.add_argument("--admin", default=argparse.SUPPRESS, help=ADMIN_HELP)
    v = sub.add_parser("alerts", help="recent alerts and each pipeline's delivery state; `alerts test` sends one")
    v.add_argument("action", nargs="?", choices=["test"], help="test: a test alert through every pipeline")
    v.add_argument("--json", action="store_true", help="print the raw JSON")
    v.add_argument("--admin", default=argparse.SUPPRESS, help=ADMIN_HELP)
    plan_cli.add_parser(sub, ADMIN_HELP)
    tester_link.add_parser(sub, ADMIN_HELP)
    v = sub.add_parser("mirror", help="copy PERCENT of the safe requests (discovery, JWKS, login page) to CLUSTER; "
                                      "0 stops")
    v.add_argument("cluster", metavar="CLUSTER")
    v.add_argument("percent", metavar="PERCENT")
    v.add_argument("--admin", default=argparse.SUPPRESS, help=ADMIN_HELP)
    v = sub.add_parser("sign-out-all", help="end every ops dashboard session, on every router sharing the state")
    v.add_argument("--admin", default=argparse.SUPPRESS, help=ADMIN_HELP)
    v = sub.add_parser("nodes", help="show or set a cluster's nodes at run time")
    v.add_argument("cluster", metavar="CLUSTER")
    v.add_argument("--set", dest="set_nodes", metavar="NAME=HOST:PORT[@WEIGHT][,...]",
                   help="replace the cluster's whole node list")
    v.add_argument("--admin", default=argparse.SUPPRESS, help=ADMIN_HELP)
    return p


def config_from_args(a: argparse.Namespace) -> Config:
    if a.config and a.cluster:
        raise ConfigError("--cluster: cannot be combined with --config (put clusters in the file)")
    if a.config:
        cfg = load_toml(a.config)
    else:
        if len(a.cluster) != 2:
            raise ConfigError("--cluster: give exactly two clusters (stable first, then canary), "
                              "or use --config FILE")
        cfg = Config(clusters=[parse_cluster_arg(c) for c in a.cluster])
    if a.listen:
        cfg.listen = parse_hostport(a.listen, "--listen")
    if a.admin:
        cfg.admin = parse_hostport(a.admin, "--admin")
    redis_url = a.redis or (None if cfg.redis else os.environ.get("REDIS_URL"))
    if redis_url:
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"--redis: expected a redis:// URL, got {redis_url!r}")
        cfg.redis = redis_url
    if a.state:
        cfg.state_file = a.state
    if a.workers is not None:
        cfg.workers = a.workers
    if a.trusted_hops is not None:
        cfg.trusted_hops = a.trusted_hops
    if a.trusted_proxy:
        cfg.trusted_proxies = [c for c in a.trusted_proxy if c != "none"]
    if a.no_access_log:
        cfg.access_log = False
    if a.initial_percent is not None:
        cfg.share.initial_percent = a.initial_percent
    if a.public_origin is not None:
        cfg.public_origin = a.public_origin.rstrip("/")
    validate(cfg)
    if cfg.workers > 64:
        raise ConfigError("--workers: at most 64")
    return cfg




def _run_worker(cfg: Config, token: str, pin: str, worker: int, reuse_port: bool,
                fallbacks: tuple[str, ...]) -> None:
    import asyncio

    from canary.cli.router_process import RouterProcess
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    app = RouterProcess(cfg, token, pin, worker, fallbacks)
    runner(app.run(reuse_port=reuse_port, run_admin=worker == 0))


def serve(a: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(a)
    except ConfigError as e:
        die(str(e))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="canary %(levelname)s %(name)s: %(message)s")
    from canary.alerts.pipelines import PipelineError
    from canary.alerts.settings import from_environment
    try:
        from_environment()   # a bad ALERT_* setting stops the router here, with one line, not at the first alert
    except PipelineError as e:
        die(str(e))
    token = secret.admin_token(create=True) or ""
    pin = secret.pin_secret()
    fallbacks = secret.pin_secret_fallbacks()
    for name, value in (("CANARY_ADMIN_TOKEN", token), ("CANARY_PIN_SECRET", pin),
                        *(("CANARY_PIN_SECRET_FALLBACKS", f) for f in fallbacks)):
        if len(value) < secret.MIN_LENGTH:  # a short admin token or pin key can be guessed
            die(f"{name}: must be at least {secret.MIN_LENGTH} characters (got {len(value)})")
    from canary.native import compiled     # after every check: a refused start prints one line only
    logging.getLogger("canary.compiled").info("request path: %s", compiled.status())
    if cfg.workers == 1:
        _run_worker(cfg, token, pin, 0, False, fallbacks)
        return 0
    import signal
    children: list[int] = []
    for w in range(cfg.workers):
        pid = os.fork()
        if pid == 0:
            try:
                _run_worker(cfg, token, pin, w, True, fallbacks)
            finally:
                os._exit(0)
        children.append(pid)

    def forward(sig: int, _frame: Any) -> None:
        for c in children:
            try:
                os.kill(c, sig)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for _ in children:
        _, st = os.wait()
        status = status or (os.waitstatus_to_exitcode(st) and 1)
        forward(signal.SIGTERM, None)
    return status


# -- ops verbs ----------------------------------------------------------------------------------------------
class AdminCallError(Exception):
    """An admin API call that failed: `status` is the HTTP code (0 when unreachable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def admin_request(base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None,
                  timeout: float = 10) -> Any:
    """One authenticated JSON call to a router's admin listener (used by these verbs and by deploy/)."""
    data = json.dumps(body).encode() if body is not None else (b"{}" if method != "GET" else None)
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("error", e.reason)
        except ValueError:
            msg = e.reason
        raise AdminCallError(e.code, str(msg)) from None
    except (urllib.error.URLError, OSError) as e:
        raise AdminCallError(0, f"cannot reach the admin API at {base}: {getattr(e, 'reason', e)}") from None


def call_admin(admin: str, method: str, path: str, body: dict[str, Any] | None = None,
               bad_args: tuple[int, ...] = (400,)) -> dict[str, Any]:
    """Call the admin API; an HTTP status in `bad_args` means the user's arguments were wrong (exit 2)."""
    if not admin.startswith(("http://", "https://")):
        die(f"--admin: expected an http:// URL, got {admin!r}")
    token = secret.admin_token(create=False)
    if not token:
        die("no admin token: set CANARY_ADMIN_TOKEN or create the token file "
            f"{secret.secret_path('CANARY_ADMIN_TOKEN_FILE', secret.var_path('canary-admin-token'))}")
    try:
        return admin_request(admin, token, method, path, body)
    except AdminCallError as e:
        if e.status == 401:
            die("admin API rejected the token (401 Unauthorized): check CANARY_ADMIN_TOKEN "
                "or the token file", 1)
        die(str(e), 2 if e.status in bad_args else 1)


def parse_percent(verb: str, value: str) -> float:
    try:
        pct = float(value.rstrip("%"))
    except ValueError:
        die(f"{verb}: PERCENT must be a number between 0 and 100, got {value!r}")
    if not 0 <= pct <= 100 or pct != pct:
        die(f"{verb}: PERCENT must be between 0 and 100, got {value!r}")
    return pct


def print_status(st: dict[str, Any]) -> None:
    print(f"stable={st['stable']} canary={st['canary']} share={st['percent']:g}% "
          f"effective={st['effective_canary_percent']:g}% panic={'yes' if st['panic'] else 'no'} "
          f"drained={','.join(st['drained']) or '-'}"
          + "".join(f" shifted={name}:{pct:g}%" for name, pct in st.get("shift", {}).items()))
    print(plan_cli.describe(st.get("plan")))
    m = st.get("mirror")
    if m:
        print(f"mirror: {m['percent']:g}% of safe requests copied to {m['cluster']} (copied {m['copied']}, "
              f"answered {m['answered']}, failed {m['failed']}, dropped {sum(m['dropped'].values())})")
    for name, c in st["clusters"].items():
        print(f"  {name:<12} {c['role']:<7} {'available' if c['available'] else 'DOWN':<9} "
              f"slow_start={c['slow_start_factor']:g} active={c['active']} queued={c['queued']}")
        for n in c["nodes"]:
            print(f"    {n['name']:<16} {n['address']:<22} {n['state']:<10} requests={n['requests']} "
                  f"ejections={n['ejections']}")


def parse_node_list(value: str) -> list[dict[str, Any]]:
    """NAME=HOST:PORT[@WEIGHT][,...] -> the admin API's node list (checked here too, for a local message)."""
    from canary.discovery.membership import MembershipError, parse_nodes, spec_of
    out: list[dict[str, Any]] = []
    for item in value.split(","):
        name, sep, addr = item.strip().partition("=")
        if not sep or not name or not addr:
            die(f"nodes --set: expected NAME=HOST:PORT[@WEIGHT][,...], got {item.strip()!r}")
        addr, at, w = addr.partition("@")
        entry: dict[str, Any] = {"name": name, "address": addr}
        if at:
            if not w.isdigit():
                die(f"nodes --set: {name}: WEIGHT must be an integer >= 1, got {w!r}")
            entry["weight"] = int(w)
        out.append(entry)
    try:
        return [spec_of(n) for n in parse_nodes(out, "", [])]
    except MembershipError as e:
        die(f"nodes --set: {e}")


def print_nodes(cluster: str, source: str, nodes: list[dict[str, Any]]) -> None:
    print(f"{cluster} ({'set at run time' if source == 'state' else 'from the configuration'})")
    for n in nodes:
        state = n.get("state")
        print(f"  {n['name']:<16} {n['address']:<22} weight={n['weight']}" + (f" {state}" if state else ""))


def nodes_verb(a: argparse.Namespace) -> int:
    from urllib.parse import quote
    path = f"/api/clusters/{quote(a.cluster, safe='')}/nodes"
    if a.set_nodes is None:
        doc = call_admin(a.admin, "GET", path, bad_args=(400, 404))
        print_nodes(doc["cluster"], doc["source"], doc["nodes"])
        return 0
    nodes = parse_node_list(a.set_nodes)
    st = call_admin(a.admin, "PUT", path, {"nodes": nodes}, bad_args=(400, 404))
    print_nodes(a.cluster, "state", st["clusters"][a.cluster]["nodes"])
    return 0


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.cmd == "serve":
        return serve(a)
    if a.cmd == "nodes":
        return nodes_verb(a)
    if a.cmd == "plan":
        return plan_cli.plan_verb(a, call_admin, die, print_status)
    if a.cmd == "tester-link":
        return tester_link.tester_link_verb(a, call_admin, die)
    if a.cmd == "alerts":
        from canary.cli.alerts import alerts_verb
        return alerts_verb(a, call_admin)
    if a.cmd == "sign-out-all":
        call_admin(a.admin, "POST", "/api/sign-out-all")
        print("every ops dashboard session is signed out; the bearer token still works")
        return 0
    if a.cmd == "status":
        st = call_admin(a.admin, "GET", "/api/status")
        print(json.dumps(st, indent=2, sort_keys=True)) if a.json else print_status(st)
        return 0
    if a.cmd == "ramp":
        st = call_admin(a.admin, "POST", "/api/ramp", {"percent": parse_percent("ramp", a.percent)})
    elif a.cmd == "mirror":
        st = call_admin(a.admin, "POST", "/api/mirror",
                        {"cluster": a.cluster, "percent": parse_percent("mirror", a.percent)})
    elif a.cmd in ("promote", "rollback"):
        st = call_admin(a.admin, "POST", f"/api/{a.cmd}")
    else:
        st = call_admin(a.admin, "POST", f"/api/{a.cmd}", {"target": a.target})
    print_status(st)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
