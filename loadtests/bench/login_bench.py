"""Login-service benchmark: logins/s against the Argon2 bound, and /api/session requests/s per worker.

(a) A real gunicorn node (default workers and threads) and a real Redis; client threads POST /api/login as
    fast as they can for a fixed time. The bound is cores / (one Argon2 verify with the configured
    cost, measured here): no server can log people in faster than it can check their passwords.
(b) The same node with one worker; wrk asks GET /api/session with a logged-in session cookie.
    Two such nodes side by side, one with the fast path (accounts/fast_session.py) and one with
    LOGINSVC_SESSION_FAST_PATH=0 (Django's full path), measured in interleaved wrk rounds with the
    same settings, so that a machine shared with other work slows both alike.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from argon2 import PasswordHasher, Type

from deploy.node import Node, free_port, manage
from deploy.redis_server import RedisServer
from loadtests.bench import wrk
from loginsvc import conf

PASSWORD = "benchmark password 1"
EMAIL = "bench@example.test"


def argon2_verify_ms(samples: int = 30) -> float:
    """Median time of one verify with the configured parameters, in this process, on this machine."""
    options = conf.load()
    hasher = PasswordHasher(options["ARGON2_TIME_COST"], options["ARGON2_MEMORY_COST"],
                            options["ARGON2_PARALLELISM"], type=Type.ID)
    encoded = hasher.hash(PASSWORD)
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        hasher.verify(encoded, PASSWORD)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def argon2_parallel_per_s(threads: int, seconds: float = 3.0) -> float:
    """Verifies per second with one thread per core doing nothing else: the real hashing ceiling.

    Argon2 is memory-bound; cores share caches and memory bandwidth, so N cores verify less than
    N times as fast as one. The gap between this and cores / verify time is not the server's.
    """
    options = conf.load()
    hasher = PasswordHasher(options["ARGON2_TIME_COST"], options["ARGON2_MEMORY_COST"],
                            options["ARGON2_PARALLELISM"], type=Type.ID)
    encoded = hasher.hash(PASSWORD)
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        while time.monotonic() < deadline:
            hasher.verify(encoded, PASSWORD)
            counts[index] += 1

    started = time.monotonic()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.monotonic() - started)


def _csrf(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/api/session")
    response = connection.getresponse()
    response.read()
    cookie = response.getheader("Set-Cookie", "")
    return cookie.split("csrftoken=", 1)[1].split(";", 1)[0]


def login_once(connection: http.client.HTTPConnection, token: str) -> tuple[int, str]:
    body = json.dumps({"username": EMAIL, "password": PASSWORD})
    connection.request("POST", "/api/login", body, {
        "Content-Type": "application/json", "X-CSRFToken": token, "Cookie": f"csrftoken={token}",
    })
    response = connection.getresponse()
    response.read()
    session = next((c.split("=", 1)[1].split(";", 1)[0] for c in response.headers.get_all("Set-Cookie") or []
                    if c.startswith("loginsvc_sid=")), "")
    return response.status, session


def closed_loop(clients: int, seconds: float, make_call: Callable[[], Callable[[], bool]]) -> tuple[list[float], int, float]:
    """`clients` threads, each calling its own `make_call()` (False: a failure) as fast as it can for
    `seconds`: every call's latency (sorted), the failures, and the time it took."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def worker() -> None:
        call = make_call()
        mine: list[float] = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            if not call():
                with lock:
                    failures[0] += 1
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return latencies, failures[0], time.monotonic() - started


def login_throughput(port: int, clients: int, seconds: float) -> dict:
    token = _csrf(port)

    def make_call() -> Callable[[], bool]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        return lambda: login_once(connection, token)[0] == 200

    latencies, failures, elapsed = closed_loop(clients, seconds, make_call)
    return {
        "logins_per_s": (len(latencies) - failures) / elapsed,
        "failures": failures,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "clients": clients,
        "seconds": round(elapsed, 1),
    }


def _median_round(rounds: list[dict]) -> dict:
    """The round with the median throughput (all of its figures, so p50/p99 belong together)."""
    return sorted(rounds, key=lambda row: row["requests_per_s"])[len(rounds) // 2]


def _fast_path_counts(node: Node) -> dict[str, float]:
    """loginsvc_session_fast_path_total by result, from the node's /metrics (loopback may read it)."""
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    return {result: float(value) for result, value in
            re.findall(r'^loginsvc_session_fast_path_total\{result="(\w+)"\} (\S+)$', text, re.M)}


def session_side_by_side(fast: Node, django: Node, rounds: int, seconds: int) -> dict:
    """GET /api/session per worker, fast path vs Django, wrk rounds interleaved (order alternating).

    Both nodes share the database and Redis, so one login serves both. Rows: a signed-in browser,
    and a signed-out one that already holds its CSRF cookie.
    """
    token = _csrf(fast.port)
    status, session = login_once(http.client.HTTPConnection("127.0.0.1", fast.port), token)
    assert status == 200 and session, "benchmark login failed"
    cookies = {"signed_in": {"Cookie": f"loginsvc_sid={session}; csrftoken={token}"},
               "signed_out": {"Cookie": f"csrftoken={token}"}}
    for node in (fast, django):
        for headers in cookies.values():
            wrk.run(node.url + "/api/session", 8, 1, headers=headers)  # warm-up: imports, connections, caches
    runs: dict[str, dict[str, list[dict]]] = {kind: {"fast": [], "django": []} for kind in cookies}
    for index in range(rounds):
        order = [("fast", fast), ("django", django)]
        for label, node in order if index % 2 == 0 else order[::-1]:
            for kind, headers in cookies.items():
                runs[kind][label].append(wrk.run(node.url + "/api/session", 8, seconds, headers=headers))
    result: dict = {"rounds": rounds, "seconds_per_round": seconds, "fast_path_results": _fast_path_counts(fast)}
    for kind, by_path in runs.items():
        result[kind] = {label: {"median": _median_round(rows), "rounds": [round(r["requests_per_s"]) for r in rows]}
                        for label, rows in by_path.items()}
        result[kind]["speedup"] = round(result[kind]["fast"]["median"]["requests_per_s"]
                                        / result[kind]["django"]["median"]["requests_per_s"], 2)
    return result


def run(out_dir: Path, seconds: int = 10, rounds: int = 3) -> dict:
    cores = os.cpu_count() or 1
    scratch = Path(tempfile.mkdtemp(prefix="bench-login-"))
    redis = RedisServer(scratch / "redis", port=free_port()).start()
    env = dict(os.environ, LOGINSVC_VAR_DIR=str(scratch / "var"), REDIS_URL=redis.url,
               DJANGO_SETTINGS_MODULE="loginsvc.settings", DJANGO_SUPERUSER_PASSWORD=PASSWORD)
    env.pop("DATABASE_URL", None)
    nodes: list[Node] = []
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "createsuperuser", "--noinput", "--email", EMAIL)
        verify_ms = argon2_verify_ms()
        bound = cores / (verify_ms / 1000)
        ceiling = argon2_parallel_per_s(cores)

        node = Node(dict(env, PROMETHEUS_MULTIPROC_DIR=str(scratch / "m1")),  # default workers and threads
                    "bench", "bench-logins", log_path=scratch / "logins.log").start()
        nodes.append(node)
        login_throughput(node.port, clients=2, seconds=1)  # warm-up: imports, connections, caches
        logins = login_throughput(node.port, clients=cores * 4, seconds=seconds)
        node.stop()

        single = Node(dict(env, WEB_CONCURRENCY="1", PROMETHEUS_MULTIPROC_DIR=str(scratch / "m2")),
                      "bench", "bench-session", log_path=scratch / "session.log").start()
        nodes.append(single)
        django = Node(dict(env, WEB_CONCURRENCY="1", PROMETHEUS_MULTIPROC_DIR=str(scratch / "m3"),
                           LOGINSVC_SESSION_FAST_PATH="0"),
                      "bench", "bench-session-django", log_path=scratch / "session-django.log").start()
        nodes.append(django)
        session_rows = session_side_by_side(single, django, rounds=rounds, seconds=max(1, seconds // 2))
        anonymous = wrk.run(single.url + "/api/session", 8, seconds)  # a new visitor: Django mints a CSRF cookie
        floor = wrk.run(single.url + "/healthz", 8, seconds)  # gunicorn + the first two middlewares only
    finally:
        for node in nodes:
            node.stop()
        redis.stop()

    params = conf.load()
    result = {
        "machine": {"cores": cores},
        "argon2": {"time_cost": params["ARGON2_TIME_COST"], "memory_kib": params["ARGON2_MEMORY_COST"],
                   "parallelism": params["ARGON2_PARALLELISM"], "verify_ms": round(verify_ms, 2)},
        "logins": {**{k: round(v, 2) if isinstance(v, float) else v for k, v in logins.items()},
                   "bound_per_s": round(bound, 1), "fraction_of_bound": round(logins["logins_per_s"] / bound, 3),
                   "parallel_hash_ceiling_per_s": round(ceiling, 1),
                   "fraction_of_parallel_ceiling": round(logins["logins_per_s"] / ceiling, 3),
                   "goal_fraction": 0.9},
        "api_session_per_worker": {"authenticated": session_rows["signed_in"]["fast"]["median"],
                                   "anonymous": anonymous, "healthz_floor": floor, "goal_per_s": 1500,
                                   "side_by_side": session_rows},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "login.json").write_text(json.dumps(result, indent=2))
    print_table(result)
    return result


def print_table(result: dict) -> None:
    a, logins, api = result["argon2"], result["logins"], result["api_session_per_worker"]
    print(f"\nLogin service ({result['machine']['cores']} cores; Argon2id m={a['memory_kib']} KiB "
          f"t={a['time_cost']} p={a['parallelism']}, verify {a['verify_ms']} ms)")
    print(f"{'measure':<38}{'value':>12}{'goal':>12}")
    print(f"{'logins/s (gunicorn, ' + str(logins['clients']) + ' clients)':<38}{logins['logins_per_s']:>12.1f}"
          f"{'':>12}")
    print(f"{'  bound: cores / verify time':<38}{logins['bound_per_s']:>12.1f}{'':>12}")
    print(f"{'  fraction of bound':<38}{logins['fraction_of_bound']:>12.3f}{'>= 0.9':>12}")
    print(f"{'  hashing alone, all cores, per s':<38}{logins['parallel_hash_ceiling_per_s']:>12.1f}{'':>12}")
    print(f"{'  fraction of that ceiling':<38}{logins['fraction_of_parallel_ceiling']:>12.3f}{'':>12}")
    print(f"{'  login p50 / p99 ms':<38}{logins['p50_ms']:>6.0f} /{logins['p99_ms']:>4.0f}{'':>12}")
    rows = (("/api/session, logged in", api["authenticated"], ">= 1500"),
            ("/api/session, new visitor", api["anonymous"], ""), ("/healthz (floor)", api["healthz_floor"], ""))
    for label, row, goal in rows:
        print(f"{label + ' req/s, 1 worker':<38}{row['requests_per_s']:>12.0f}{goal:>12}")
        print(f"{'  p50 / p99 ms':<38}{row['p50']:>6.2f} /{row['p99']:>5.2f}{'':>12}")
    side = api["side_by_side"]
    print(f"\n/api/session side by side, 1 worker each, {side['rounds']} interleaved wrk rounds of "
          f"{side['seconds_per_round']} s (median round; every round's req/s)")
    for kind, label in (("signed_in", "logged in"), ("signed_out", "logged out, CSRF cookie held")):
        for path in ("fast", "django"):
            row = side[kind][path]
            print(f"{'  ' + label + ', ' + ('fast path' if path == 'fast' else 'Django'):<38}"
                  f"{row['median']['requests_per_s']:>12.0f}   p50 {row['median']['p50']:.2f} p99 "
                  f"{row['median']['p99']:.2f} ms   rounds {row['rounds']}")
        print(f"{'  speed-up':<38}{side[kind]['speedup']:>12.2f}")
    print(f"  fast path results on its node: {side['fast_path_results']}")


if __name__ == "__main__":
    run(Path("var/bench"))
