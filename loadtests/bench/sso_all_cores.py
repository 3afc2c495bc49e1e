"""Refresh grants per second with every core busy, against Keycloak's budget of 120 per vCPU.

Keycloak's sizing guide ("Concepts for sizing CPU and memory resources") allots one vCPU of the
Keycloak cluster for every 120 refresh-token requests per second, and budgets the database's CPU
apart. So one node runs as many gunicorn workers as the machine has cores (the default threads),
and wrk drives refresh grants at it, one token family per connection (sso_load.py), in rounds
interleaved with GET /api/session against the same node, so the ratio between the two holds on a
machine shared with other work. Every round reports:
- refresh grants per second, and per core (÷ cores: everything here shares the cores, wrk and
  the database included);
- CPU milliseconds per request of the service (the node's processes; on SQLite that includes the
  database, which runs inside them), of the PostgreSQL server when it is ours, and of wrk;
- what one core does of the service's own work: 1000 / service CPU ms, the figure Keycloak's
  per-vCPU budget compares with (it counts the service's CPUs, not the database's or the load's);
- how evenly the workers shared the work (a worker that accepted fewer connections idles).
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from deploy.node import Node
from loadtests.bench import wrk
from loadtests.bench.login_bench import _median_round
from loadtests.bench.sso_load import Product, children_cpu, tree_cpu, worker_cpu

KEYCLOAK_PER_CORE = 120
ROWS = ("token_refresh", "api_session")


def cores() -> int:
    return os.cpu_count() or 1


def _readings(node: Node, database_pid: int | None) -> tuple[list[float], dict[int, float]]:
    """CPU seconds so far of [the node, the database server, finished children (wrk)], and per worker."""
    assert node.process is not None
    return [tree_cpu(node.process.pid), tree_cpu(database_pid), children_cpu()], worker_cpu(node.process.pid)


def _round(row: str, node: Node, product: Product, connections: int, seconds: int, scratch: Path,
           database_pid: int | None) -> dict:
    """One wrk run of `row` with the CPU each party spent on it, per request."""
    script = product.refresh_script(connections, scratch) if row == "token_refresh" else ""
    before, workers_before = _readings(node, database_pid)
    if row == "token_refresh":
        result = product.token_run(node.url, connections, seconds, script, threads=connections)
    else:
        result = wrk.run(node.url + "/api/session", connections, seconds, threads=connections,
                         headers={"Cookie": product.cookie})
    after, workers_after = _readings(node, database_pid)
    requests = max(1.0, result["requests_per_s"] * seconds)
    spent = [(a - b) / requests * 1000 for a, b in zip(after, before)]
    workers = [workers_after[pid] - workers_before.get(pid, 0.0) for pid in sorted(workers_after)]
    result.update(
        cpu_ms_per_request={"service": round(spent[0], 3), "database": round(spent[1], 3) if database_pid else None,
                            "wrk": round(spent[2], 3)},
        worker_cpu_share=[round(w / max(sum(workers), 1e-9), 2) for w in workers],
        per_core=round(result["requests_per_s"] / cores(), 1))
    result["per_core_of_service_cpu"] = round(1000 / max(spent[0], 1e-6), 1)
    return result


def measure(env: dict[str, str], secret: str, scratch: Path, label: str, database: str,
            database_pid: int | None = None, rounds: int = 3, seconds: int = 4) -> dict:
    """The all-cores rows on a node using `env`'s database, in `rounds` interleaved rounds."""
    workers, threads = cores(), int(env.get("LOGINSVC_THREADS", "2"))
    connections = 4 * workers * threads  # every worker thread busy, however unevenly gunicorn deals connections
    load_at_start = os.getloadavg()
    node = Node(dict(env, WEB_CONCURRENCY=str(workers), PROMETHEUS_MULTIPROC_DIR=str(scratch / f"metrics-{label}")),
                "bench", f"bench-sso-{label}", log_path=scratch / f"{label}.log").start()
    try:
        product = Product(node.port, secret)
        for row in ROWS:
            _round(row, node, product, connections, 1, scratch, database_pid)  # warm every worker up
        runs: dict[str, list[dict]] = {row: [] for row in ROWS}
        for index in range(rounds):
            for row in (ROWS if index % 2 == 0 else ROWS[::-1]):
                runs[row].append(_round(row, node, product, connections, seconds, scratch, database_pid))
    finally:
        node.stop()
    result: dict = {"database": database, "workers": workers, "threads": threads, "connections": connections,
                    "rounds": rounds, "seconds_per_round": seconds,
                    "load_average_at_start": [round(x, 2) for x in load_at_start],
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                    "keycloak_per_core": KEYCLOAK_PER_CORE}
    for row, rows in runs.items():
        median = _median_round(rows)
        result[row] = {"median": median, "rounds": [round(r["requests_per_s"]) for r in rows],
                       "non_2xx": sum(r["non_2xx"] for r in rows),
                       "socket_errors": sum(r["socket_errors"] for r in rows)}
    ratios = [a["requests_per_s"] / b["requests_per_s"] for a, b in zip(runs["token_refresh"], runs["api_session"])]
    result["refresh_per_session"] = {"per_round": [round(r, 3) for r in ratios], "median": round(statistics.median(ratios), 3)}
    return result


def print_table(result: dict) -> None:
    """The all-cores rows of one database, with the budget beside them."""
    load = " ".join(f"{x:.2f}" for x in result["load_average_at_start"])
    print(f"\nRefresh grants with every core busy ({result['database']}; {result['workers']} workers x "
          f"{result['threads']} threads on {cores()} cores; wrk -t{result['connections']} -c{result['connections']}, "
          f"one token family per connection; {result['rounds']} interleaved rounds of {result['seconds_per_round']} s; "
          f"load average at start {load})")
    print(f"{'endpoint':<28}{'req/s':>7}{'per core':>10}{'÷ session':>11}{'CPU ms per request':>21}"
          f"{'per core of':>13}{'p50 / p99 ms':>17}   rounds")
    print(f"{'':<56}{'service/database/wrk':>21}{'service CPU':>13}")
    for row, label in (("token_refresh", "POST /oidc/token/, refresh"), ("api_session", "GET /api/session")):
        median, cpu = result[row]["median"], result[row]["median"]["cpu_ms_per_request"]
        ratio = result["refresh_per_session"]["median"] if row == "token_refresh" else 1.0
        database = "-" if cpu["database"] is None else f"{cpu['database']:.2f}"
        bad = result[row]["non_2xx"] + result[row]["socket_errors"]
        print(f"{label:<28}{median['requests_per_s']:>7.0f}{median['per_core']:>10.1f}{ratio:>11.3f}"
              f"{cpu['service']:>10.2f} / {database:>4} / {cpu['wrk']:.2f}{median['per_core_of_service_cpu']:>10.0f}"
              f"{median['p50']:>10.1f} / {median['p99']:<6.1f}  {result[row]['rounds']}"
              + (f"   ({bad} non-2xx or socket errors: not valid)" if bad else ""))
    refresh = result["token_refresh"]["median"]
    met = "met" if refresh["per_core"] >= KEYCLOAK_PER_CORE else "not met"
    print(f"  Keycloak budgets {KEYCLOAK_PER_CORE} refresh grants/s per vCPU: here {refresh['per_core']:.0f} per core with "
          f"the load and the database on the same cores ({met}), {refresh['per_core_of_service_cpu']:.0f} per core of "
          f"the service's own CPU; workers' CPU shares {refresh['worker_cpu_share']}")
    print(f"  load average at end: {' '.join(f'{x:.2f}' for x in result['load_average_at_end'])}")
