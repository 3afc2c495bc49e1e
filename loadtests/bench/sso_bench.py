"""Single sign-on benchmark: the provider's endpoints per worker beside /api/session, and refresh grants on all cores.

Per worker: the back-channel endpoints (userinfo, introspection) are on every product's hot path,
and the goal is 0.8 of GET /api/session's rate for each; the token endpoint is measured beside them.
So all of them are measured against one node (1 worker, the default 2 threads, as login_bench
measures /api/session) in the same run, with the same wrk settings (8 connections), in interleaved
rounds whose order rotates, so that a machine shared with other work slows every endpoint alike.
The ratios within the run are the machine-independent figures; the load average at the start says
how busy the machine was. A second such node with LOGINSVC_SSO_FAST_PATH=0 answers the same userinfo
and introspection requests through Django's full path (sso/fast_token.py off), in the same rounds.

What each row asks (a confidential first-party product, client_secret_basic, as a product's back end):
- GET /api/session with a signed-in session cookie (the fast path of accounts/fast_session.py);
- GET /oidc/userinfo/ with `Authorization: Bearer <access token>` (scope openid email profile);
- POST /oidc/introspect/ token=<that access token>, client authenticated with HTTP Basic;
- POST /oidc/token/ grant_type=authorization_code: redeems a pool of codes minted before the round;
- POST /oidc/token/ grant_type=refresh_token: one token family per connection, each answer's
  rotated token presented next (sso_load.py says how). Every request is a full refresh: client
  authentication, token rotation (writes) and a newly signed ID token;
- GET /healthz: gunicorn and the first middlewares only, the floor.

Then refresh grants with as many workers as cores, on SQLite and on PostgreSQL, beside Keycloak's
budget of 120 per vCPU (sso_all_cores.py). PostgreSQL is the database of BENCH_DATABASE_URL (an
empty one), else a scratch database on DATABASE_URL's server, else a throwaway server when one is
installed (postgres_server.py); without any, the bench says so and measures SQLite only.
The per-worker rows use a fresh SQLite database under a scratch folder.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from deploy.node import Node, free_port
from deploy.redis_server import RedisServer
from loadtests.bench import postgres_server, sso_all_cores, wrk
from loadtests.bench.login_bench import _median_round
from loadtests.bench.sso_load import Product, prepare

CONNECTIONS = 8
CODE_HEADROOM = 1.5  # codes minted per round: 1.5 x the fastest redemption rate seen so far x its length
GOAL_RATIO = 0.8
# row: (node, request). "fast" runs the code as it is, "django" the same with LOGINSVC_SSO_FAST_PATH=0
# (Django's full path), "before" the code of BENCH_SSO_BEFORE (a git ref) when it is set.
ROWS = {"api_session": ("fast", "api_session"), "userinfo": ("fast", "userinfo"), "introspect": ("fast", "introspect"),
        "userinfo_django": ("django", "userinfo"), "introspect_django": ("django", "introspect"),
        "token_code": ("fast", "token_code"), "token_refresh": ("fast", "token_refresh"), "healthz": ("fast", "healthz")}
BEFORE_ROWS = {f"{kind}_before": ("before", kind)
               for kind in ("api_session", "userinfo", "introspect", "token_code", "token_refresh")}
DJANGO_ROWS = {"userinfo_django": "userinfo", "introspect_django": "introspect"}

INTROSPECT_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "token=%(token)s&token_type_hint=access_token"
"""


class Target:
    """One service's nodes, its product and the credentials wrk sends, checked once as wrk will send them."""

    def __init__(self, product: Product, nodes: list[Node], scratch: Path) -> None:
        self.product, self.scratch = product, scratch
        access = product.sign_in()["access_token"]  # its own family: the refresh rows never revoke it
        self.session, self.bearer = {"Cookie": product.cookie}, {"Authorization": f"Bearer {access}"}
        self.basic = {"Authorization": product.basic}
        self.introspect_lua = scratch / f"introspect-{product.port}.lua"
        self.introspect_lua.write_text(INTROSPECT_LUA % {"token": access})
        self.mint_ports = [node.port for node in nodes]
        self.code_rate = 150.0  # codes redeemed per second, raised to the fastest round seen
        for node in nodes:
            product.port = node.port
            product.check("GET", "/api/session", None, self.session, b'"authenticated": true')
            product.check("GET", "/oidc/userinfo/", None, self.bearer, b'"email"')
            product.check("POST", "/oidc/introspect/", f"token={access}&token_type_hint=access_token",
                          dict(self.basic, **{"Content-Type": "application/x-www-form-urlencoded"}), b'"active": true')
        product.port = nodes[0].port

    def run(self, kind: str, url: str, length: int) -> dict:
        """One wrk run of `kind` against `url`."""
        if kind == "api_session":
            return wrk.run(url + "/api/session", CONNECTIONS, length, headers=self.session)
        if kind == "userinfo":
            return wrk.run(url + "/oidc/userinfo/", CONNECTIONS, length, headers=self.bearer)
        if kind == "introspect":
            return wrk.run(url + "/oidc/introspect/", CONNECTIONS, length, headers=self.basic,
                           script=str(self.introspect_lua))
        if kind == "token_code":
            pool = int(self.code_rate * length * CODE_HEADROOM)
            result = self.product.token_run(url, CONNECTIONS, length,
                                            self.product.code_script(pool, self.scratch, self.mint_ports))
            self.code_rate = max(self.code_rate, result["requests_per_s"])
            return dict(result, pool=pool)
        if kind == "token_refresh":
            return self.product.token_run(url, CONNECTIONS, length,
                                          self.product.refresh_script(CONNECTIONS, self.scratch), threads=CONNECTIONS)
        return wrk.run(url + "/healthz", CONNECTIONS, length)


def measure(nodes: dict[str, Node], targets: dict[str, Target], rounds: int, seconds: int) -> dict:
    """Every row in `rounds` interleaved wrk rounds, the order rotating each round; targets["current"]
    serves the "fast" and "django" nodes, targets["before"] the "before" node."""
    rows = dict(ROWS, **(BEFORE_ROWS if "before" in nodes else {}))
    names = tuple(rows)

    def one(row: str, length: int) -> dict:
        node, kind = rows[row]
        return targets["before" if node == "before" else "current"].run(kind, nodes[node].url, length)

    for row in names:
        one(row, 1)  # imports, connections, caches, compiled queries, the key ring
    runs: dict[str, list[dict]] = {row: [] for row in names}
    for index in range(rounds):
        for row in names[index % len(names):] + names[:index % len(names)]:
            runs[row].append(one(row, seconds))
    result: dict = {"rounds": rounds, "seconds_per_round": seconds, "connections": CONNECTIONS, "rows": list(names),
                    "code_headroom": CODE_HEADROOM, "fast_path_results": _fast_path_counts(nodes["fast"])}
    for row, done in runs.items():
        result[row] = {"median": _median_round(done), "rounds": [round(r["requests_per_s"]) for r in done],
                       "non_2xx": sum(r["non_2xx"] for r in done),
                       "socket_errors": sum(r["socket_errors"] for r in done)}
    # Each row against /api/session of its own code, median round and round by round (the rows of one
    # round ran within seconds of each other); the median of the per-round ratios is less swayed by one
    # slow moment than the ratio of medians.
    result["ratio_to_api_session"], result["ratio_per_round"], result["ratio_median_of_rounds"] = {}, {}, {}
    for row in names:
        base = "api_session_before" if rows[row][0] == "before" else "api_session"
        result["ratio_to_api_session"][row] = round(result[row]["median"]["requests_per_s"]
                                                    / result[base]["median"]["requests_per_s"], 3)
        result["ratio_per_round"][row] = [round(a / b, 3) for a, b in zip(result[row]["rounds"], result[base]["rounds"])]
        result["ratio_median_of_rounds"][row] = statistics.median(result["ratio_per_round"][row])
    result["fast_path_speedup"] = {kind: round(result[kind]["median"]["requests_per_s"]
                                               / result[row]["median"]["requests_per_s"], 2)
                                   for row, kind in DJANGO_ROWS.items()}
    if "before" in nodes:  # now ÷ before, round by round: what the code's changes cost or gained
        result["after_per_before"] = {row[:-len("_before")]: statistics.median(
            a / b for a, b in zip(result[row[:-len("_before")]]["rounds"], result[row]["rounds"]))
            for row in BEFORE_ROWS}
    return result


def _fast_path_counts(node: Node) -> dict[str, float]:
    """loginsvc_sso_fast_path_total by endpoint/result, from the node's /metrics (loopback may read it)."""
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    return {f"{endpoint}/{result}": float(value) for endpoint, result, value in
            re.findall(r'^loginsvc_sso_fast_path_total\{endpoint="(\w+)",result="(\w+)"\} (\S+)$', text, re.M)}


def _service_code() -> dict[str, str]:
    """Which code was measured: the commit, and whether the working tree differed from it."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  cwd=Path(__file__).resolve().parent).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "changed_files": str(len(git("status", "--porcelain", "--untracked-files=no").splitlines()))}


def per_worker(env: dict[str, str], secret: str, scratch: Path, rounds: int, seconds: int,
               before: tuple[dict[str, str], dict[str, str]] | None = None) -> dict:
    """The per-worker rows: one-worker nodes with the fast path on and off on `env`'s database, and
    one of the code at BENCH_SSO_BEFORE (`before`: before_env's pair, its own database) when asked."""
    nodes: dict[str, Node] = {}
    one_worker = dict(WEB_CONCURRENCY="1")
    try:
        for label, extra in (("fast", {}), ("django", {"LOGINSVC_SSO_FAST_PATH": "0"})):
            nodes[label] = Node(dict(env, **one_worker, PROMETHEUS_MULTIPROC_DIR=str(scratch / f"metrics-{label}"),
                                     **extra), "bench", f"bench-sso-{label}", log_path=scratch / f"{label}.log").start()
        targets = {"current": Target(Product(nodes["fast"].port, secret), [nodes["fast"], nodes["django"]], scratch)}
        if before is not None:
            before_secret = secrets.token_urlsafe(32)
            prepare(before[0], before_secret)
            nodes["before"] = Node(dict(before[1], **one_worker, PROMETHEUS_MULTIPROC_DIR=str(scratch / "metrics-before")),
                                   "bench", "bench-sso-before", log_path=scratch / "before.log").start()
            targets["before"] = Target(Product(nodes["before"].port, before_secret), [nodes["before"]], scratch)
        return measure(nodes, targets, rounds=rounds, seconds=seconds)
    finally:
        for node in nodes.values():
            node.stop()


def export_tree(ref: str, tree: Path) -> None:
    """The files of this checkout at git `ref`, written into `tree` (a new folder)."""
    tree.mkdir()
    root = Path(__file__).resolve().parents[2]
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=root, capture_output=True, timeout=60)
    if archive.returncode:
        raise SystemExit(f"BENCH_SSO_BEFORE={ref}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True, timeout=60)


def before_env(env: dict[str, str], ref: str, scratch: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The environments of manage.py and of a node running the code at git `ref`, exported under
    `scratch`, with its own SQLite database and Redis database. PYTHONSAFEPATH keeps the working
    directory (this checkout) off the import path; manage.py finds the tree on PYTHONPATH, and
    gunicorn works in the tree: it puts its working directory first on the path, before
    anything PYTHONPATH names, so the node must not have the tree on PYTHONPATH too."""
    tree = scratch / "before-tree"
    export_tree(ref, tree)
    node = dict(env, PYTHONSAFEPATH="1", GUNICORN_CMD_ARGS=f"--chdir {tree}",
                LOGINSVC_VAR_DIR=str(scratch / "var-before"), REDIS_URL=env["REDIS_URL"].rsplit("/", 1)[0] + "/1")
    return dict(node, PYTHONPATH=str(tree)), node


def all_cores_postgresql(env: dict[str, str], scratch: Path, rounds: int, seconds: int) -> dict:
    """The all-cores rows on PostgreSQL, or why they were skipped ({"skipped": reason})."""
    try:
        with postgres_server.database() as database:
            pg_env = dict(env, DATABASE_URL=database.url)
            secret = secrets.token_urlsafe(32)
            prepare(pg_env, secret)
            result = sso_all_cores.measure(pg_env, secret, scratch, "all-cores-postgresql", "postgresql",
                                           database.server_pid, rounds=rounds, seconds=seconds)
            return dict(result, database_source=database.source)
    except postgres_server.Unavailable as exc:
        return {"skipped": str(exc)}


def run(out_dir: Path, seconds: int = 3, rounds: int = 4, all_core_rounds: int = 3, all_core_seconds: int = 4) -> dict:
    load_at_start = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="bench-sso-"))
    redis = RedisServer(scratch / "redis", port=free_port()).start()
    secret = secrets.token_urlsafe(32)
    env = dict(os.environ, LOGINSVC_VAR_DIR=str(scratch / "var"), REDIS_URL=redis.url,
               DJANGO_SETTINGS_MODULE="loginsvc.settings")
    env.pop("DATABASE_URL", None)  # the SQLite rows: never a database a developer's shell points at
    started = time.time()
    try:
        prepare(env, secret)
        before = os.environ.get("BENCH_SSO_BEFORE")
        rows = per_worker(env, secret, scratch, rounds, seconds,
                          before_env(env, before, scratch) if before else None)
        all_cores = {"sqlite": sso_all_cores.measure(env, secret, scratch, "all-cores-sqlite", "sqlite",
                                                     rounds=all_core_rounds, seconds=all_core_seconds),
                     "postgresql": all_cores_postgresql(env, scratch, all_core_rounds, all_core_seconds)}
    except BaseException:
        print(f"SSO bench failed; the nodes' logs are in {scratch}")
        raise
    finally:
        redis.stop()
    shutil.rmtree(scratch, ignore_errors=True)  # databases, logs, the exported tree: tens of MB a run
    result = {"machine": {"cores": os.cpu_count() or 1,
                          "load_average_at_start": [round(x, 2) for x in load_at_start],
                          "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                          "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))},
              "code": _service_code(), "before": os.environ.get("BENCH_SSO_BEFORE"), "database": "sqlite",
              "node": {"workers": 1, "threads": int(os.environ.get("LOGINSVC_THREADS", "2"))},
              "goal_ratio": GOAL_RATIO, **rows, "all_cores": all_cores}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sso.json").write_text(json.dumps(result, indent=2))
    print_table(result)
    summary = []
    for database, figures in all_cores.items():
        if "skipped" in figures:
            print(f"\nRefresh grants on all cores, {database}: skipped: {figures['skipped']}")
        else:
            sso_all_cores.print_table(figures)
            median = figures["token_refresh"]["median"]
            summary.append(f"{database} {median['requests_per_s']:.0f}/s on {figures['workers']} workers = "
                           f"{median['per_core']:.0f} per core ({median['per_core_of_service_cpu']:.0f} per core of "
                           f"the service's CPU)")
    one = result["token_refresh"]["median"]
    print(f"\nRefresh grants: one worker {one['requests_per_s']:.0f}/s (p50 {one['p50']:.0f} ms, "
          f"{result['ratio_median_of_rounds']['token_refresh']:.3f} of /api/session); all cores: "
          + ("; ".join(summary) or "not measured") + f"; Keycloak's budget: {sso_all_cores.KEYCLOAK_PER_CORE} per vCPU")
    return result


LABELS = {"api_session": "GET /api/session, logged in", "userinfo": "GET /oidc/userinfo/, Bearer",
          "introspect": "POST /oidc/introspect/, Basic", "userinfo_django": "  userinfo, Django's path",
          "introspect_django": "  introspection, Django's path", "token_code": "POST /oidc/token/, code",
          "token_refresh": "POST /oidc/token/, refresh", "healthz": "GET /healthz (floor)"}


def _label(row: str) -> str:
    return f"  {LABELS[row[:-len('_before')]]}, before" if row.endswith("_before") else LABELS[row]


def print_table(result: dict) -> None:
    machine = result["machine"]
    load = " ".join(f"{x:.2f}" for x in machine["load_average_at_start"])
    print(f"\nSingle sign-on per worker ({result['database']}; {machine['cores']} cores, load average at start {load}; "
          f"1 worker, {result['node']['threads']} threads; wrk -c{result['connections']}, {result['rounds']} "
          f"interleaved rounds of {result['seconds_per_round']} s; median round, every round's req/s; "
          f"code {result['code']['commit']}, {result['code']['changed_files']} files changed since"
          + (f"; before: {result['before']}" if result["before"] else "") + ")")
    print(f"{'endpoint':<40}{'req/s':>8}{'÷ session':>11}{'per round':>11}{'goal':>8}   p50 / p99 ms     rounds")
    for row in result["rows"]:
        median = result[row]["median"]
        goal = f">= {result['goal_ratio']}" if row in ("userinfo", "introspect") else ""
        bad = result[row]["non_2xx"] + result[row]["socket_errors"]
        print(f"{_label(row):<40}{median['requests_per_s']:>8.0f}{result['ratio_to_api_session'][row]:>11.3f}"
              f"{result['ratio_median_of_rounds'][row]:>11.3f}{goal:>8}   {median['p50']:5.2f} / {median['p99']:6.2f}   "
              f"{result[row]['rounds']}" + (f"   ({bad} non-2xx or socket errors: not valid)" if bad else ""))
    per_round = ", ".join(f"{row} {result['ratio_per_round'][row]}"
                          for row in ("userinfo", "introspect", "token_code", "token_refresh"))
    print(f"  ratios per round: {per_round}")
    if "after_per_before" in result:
        print("  now ÷ before, median of the rounds: " + ", ".join(
            f"{row} {factor:.3f}" for row, factor in result["after_per_before"].items()))
    speedup = ", ".join(f"{kind} {factor:.2f}x" for kind, factor in result["fast_path_speedup"].items())
    print(f"  fast path over Django's path: {speedup}; fast node's counts: {result['fast_path_results']}")
    failed = sum(n for key, n in result["fast_path_results"].items() if not key.endswith("/served"))
    if failed:
        print(f"  the fast node handed {failed:.0f} requests to Django (see its log): its rows are not the fast path's")
    print(f"  each code round had {result['code_headroom']}x the codes its fastest round so far needed "
          f"(a round that ran out would show non-2xx answers)")
    print(f"  load average at end: {' '.join(f'{x:.2f}' for x in machine['load_average_at_end'])}")


if __name__ == "__main__":
    run(Path("var/bench"))
