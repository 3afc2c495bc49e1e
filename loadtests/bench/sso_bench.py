"""Single sign-on benchmark: token, userinfo and introspection requests/s per worker, beside /api/session.

Issue 10 §6: the provider's back-channel endpoints are on every product's hot path; userinfo and
introspection should reach 0.8 of GET /api/session's rate. So all of them are measured against
one node (1 worker, the default 2 threads, as login_bench measures /api/session) in the same run,
with the same wrk settings (1 thread, 8 connections), in interleaved rounds whose order rotates,
so that a machine shared with other work slows every endpoint alike. The ratios within the run
are the machine-independent figures; the load average at the start says how busy the machine was.
A second such node with LOGINSVC_SSO_FAST_PATH=0 answers the same userinfo and introspection
requests through Django's full path (sso/fast_token.py off), in the same rounds.

What each row asks (a confidential first-party product, client_secret_basic, as a product's back end):
- GET /api/session with a signed-in session cookie (the fast path of accounts/fast_session.py);
- GET /oidc/userinfo/ with `Authorization: Bearer <access token>` (scope openid email profile);
- POST /oidc/introspect/ token=<that access token>, client authenticated with HTTP Basic;
- POST /oidc/token/ grant_type=refresh_token. A code is single use and a refresh token is single
  use too (rotation, and a replay revokes its family), so nothing can be repeated. wrk drives it
  with a Lua script holding a pool of refresh tokens from separate sign-ins (one family each, a few
  more than connections): each request takes one from the pool and each answer puts the rotated
  token back, so every family always has exactly one request in flight and no token is sent twice.
  Every request is a full refresh: client authentication, token rotation (writes) and a newly
  signed ID token. The pool is minted afresh (code flow with PKCE) before every round.
- GET /healthz: gunicorn and the first middlewares only, the floor.

The nodes use a fresh SQLite database under a scratch folder, or the PostgreSQL database named by
BENCH_DATABASE_URL (an empty one: the bench migrates it and creates its account and product there;
production runs on PostgreSQL, so that is the figure that counts). DATABASE_URL is never used, so
`make bench` cannot write into the database a developer's shell points at.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from deploy.node import Node, free_port, manage
from deploy.redis_server import RedisServer
from loadtests.bench import wrk
from loadtests.bench.login_bench import EMAIL, PASSWORD, _csrf, _median_round, login_once

CLIENT_ID = "bench-product"
REDIRECT_URI = "http://127.0.0.1:9/bench-product/callback"
CONNECTIONS = 8
SPARE_TOKENS = 4
GOAL_RATIO = 0.8
ROWS = ("api_session", "userinfo", "introspect", "userinfo_django", "introspect_django", "token_refresh", "healthz")
DJANGO_ROWS = {"userinfo_django": "userinfo", "introspect_django": "introspect"}  # the same request, fast path off

REGISTER = """
import os
from oauth2_provider.models import Application
from loginsvc.sso.models import Product
app = Application.objects.create(
    client_id=os.environ["BENCH_CLIENT_ID"], name="Bench product", client_secret=os.environ["BENCH_SECRET"],
    client_type=Application.CLIENT_CONFIDENTIAL, authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
    redirect_uris=os.environ["BENCH_REDIRECT_URI"], post_logout_redirect_uris="http://127.0.0.1:9/",
    skip_authorization=True, algorithm=Application.RS256_ALGORITHM, hash_client_secret=True)
Product.objects.create(application=app, backchannel_logout_uri="")
"""

# One pool of refresh tokens per wrk thread (-t1: one Lua state for all connections). LIFO, so the
# spare tokens at the bottom are only used if an answer carried no new token (counted as non-2xx).
REFRESH_LUA = """
local pool = {%(tokens)s}
local prefix = "grant_type=refresh_token&refresh_token="
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
request = function()
  local token = table.remove(pool) or "pool-exhausted"
  return wrk.format(nil, nil, nil, prefix .. token)
end
response = function(status, headers, body)
  local token = body:match('"refresh_token"%%s*:%%s*"([^"]+)"')
  if token then table.insert(pool, token) end
end
"""

INTROSPECT_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "token=%(token)s&token_type_hint=access_token"
"""


class Product:
    """The registered product's back end and the signed-in browser it sends through the code flow."""

    def __init__(self, port: int, secret: str, session_cookie: str) -> None:
        self.port, self.secret, self.cookie = port, secret, session_cookie
        self.basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{secret}".encode()).decode()

    def _request(self, method: str, path: str, body: str | None = None, headers: dict | None = None) -> tuple:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            return response.status, response.getheader("Location", ""), response.read()
        finally:
            connection.close()

    def sign_in(self) -> dict:
        """One authorization-code flow with PKCE (S256) for the signed-in browser: the token response."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode({"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
                           "scope": "openid email profile", "state": secrets.token_hex(8),
                           "nonce": secrets.token_hex(8), "code_challenge": challenge,
                           "code_challenge_method": "S256"})
        status, location, body = self._request("GET", "/oidc/authorize/?" + query, headers={"Cookie": self.cookie})
        code = parse_qs(urlsplit(location).query).get("code", [""])[0]
        if status != 302 or not code:
            raise RuntimeError(f"benchmark authorize failed: {status} {location or body[:200]!r}")
        form = urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                          "code_verifier": verifier})
        status, _, body = self._request("POST", "/oidc/token/", form, {
            "Authorization": self.basic, "Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise RuntimeError(f"benchmark code exchange failed: {status} {body[:200]!r}")
        return json.loads(body)

    def check(self, method: str, path: str, body: str | None, headers: dict, expect: bytes) -> None:
        """One request as wrk will send it must answer 200 with `expect` in the body, or the bench is void."""
        status, _, answer = self._request(method, path, body, headers)
        if status != 200 or expect not in answer:
            raise RuntimeError(f"benchmark request {method} {path} answered {status}: {answer[:200]!r}")


def _write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def measure(nodes: dict[str, Node], product: Product, scratch: Path, rounds: int, seconds: int) -> dict:
    """Every row in `rounds` interleaved wrk rounds, the order rotating each round. The rows run
    against nodes["fast"], except DJANGO_ROWS: the same requests to nodes["django"], a node with
    LOGINSVC_SSO_FAST_PATH=0 (Django's full path), to show what the fast path changes."""
    access = product.sign_in()["access_token"]  # its own family: the refresh rows never revoke it
    session_headers = {"Cookie": product.cookie}
    bearer = {"Authorization": f"Bearer {access}"}
    basic = {"Authorization": product.basic}
    introspect_lua = _write(scratch, "introspect.lua", INTROSPECT_LUA % {"token": access})
    for node in nodes.values():
        product.port = node.port
        product.check("GET", "/api/session", None, session_headers, b'"authenticated": true')
        product.check("GET", "/oidc/userinfo/", None, bearer, b'"email"')
        product.check("POST", "/oidc/introspect/", f"token={access}&token_type_hint=access_token",
                      dict(basic, **{"Content-Type": "application/x-www-form-urlencoded"}), b'"active": true')
    product.port = nodes["fast"].port

    def refresh_script(tag: str) -> str:
        tokens = [product.sign_in()["refresh_token"] for _ in range(CONNECTIONS + SPARE_TOKENS)]
        return _write(scratch, f"refresh-{tag}.lua", REFRESH_LUA % {"tokens": ", ".join(f'"{t}"' for t in tokens)})

    def one(row: str, length: int, tag: str) -> dict:
        url = (nodes["django"] if row in DJANGO_ROWS else nodes["fast"]).url
        kind = DJANGO_ROWS.get(row, row)
        if kind == "api_session":
            return wrk.run(url + "/api/session", CONNECTIONS, length, headers=session_headers)
        if kind == "userinfo":
            return wrk.run(url + "/oidc/userinfo/", CONNECTIONS, length, headers=bearer)
        if kind == "introspect":
            return wrk.run(url + "/oidc/introspect/", CONNECTIONS, length, headers=basic, script=introspect_lua)
        if kind == "token_refresh":
            return wrk.run(url + "/oidc/token/", CONNECTIONS, length, headers=basic, script=refresh_script(tag))
        return wrk.run(url + "/healthz", CONNECTIONS, length)

    for row in ROWS:
        one(row, 1, "warm-up")  # imports, connections, caches, compiled queries, the key ring
    runs: dict[str, list[dict]] = {row: [] for row in ROWS}
    for index in range(rounds):
        order = ROWS[index % len(ROWS):] + ROWS[:index % len(ROWS)]
        for row in order:
            runs[row].append(one(row, seconds, str(index)))
    result: dict = {"rounds": rounds, "seconds_per_round": seconds, "connections": CONNECTIONS,
                    "fast_path_results": _fast_path_counts(nodes["fast"])}
    for row, rows in runs.items():
        result[row] = {"median": _median_round(rows), "rounds": [round(r["requests_per_s"]) for r in rows],
                       "non_2xx": sum(r["non_2xx"] for r in rows),
                       "socket_errors": sum(r["socket_errors"] for r in rows)}
    base = result["api_session"]["median"]["requests_per_s"]
    result["ratio_to_api_session"] = {row: round(result[row]["median"]["requests_per_s"] / base, 2) for row in ROWS}
    # Per round too: the rows of one round ran within seconds of each other.
    result["ratio_per_round"] = {row: [round(a / b, 2) for a, b in zip(result[row]["rounds"],
                                                                        result["api_session"]["rounds"])]
                                 for row in ROWS}
    # The median of the per-round ratios: less swayed by one slow moment than the ratio of medians.
    result["ratio_median_of_rounds"] = {row: statistics.median(result["ratio_per_round"][row]) for row in ROWS}
    result["fast_path_speedup"] = {kind: round(result[kind]["median"]["requests_per_s"]
                                               / result[row]["median"]["requests_per_s"], 2)
                                   for row, kind in DJANGO_ROWS.items()}
    return result


def _fast_path_counts(node: Node) -> dict[str, float]:
    """loginsvc_sso_fast_path_total by endpoint/result, from the node's /metrics (loopback may read it)."""
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    return {f"{endpoint}/{result}": float(value) for endpoint, result, value in
            re.findall(r'^loginsvc_sso_fast_path_total\{endpoint="(\w+)",result="(\w+)"\} (\S+)$', text, re.M)}


def run(out_dir: Path, seconds: int = 4, rounds: int = 5) -> dict:
    load_at_start = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="bench-sso-"))
    redis = RedisServer(scratch / "redis", port=free_port()).start()
    secret = secrets.token_urlsafe(32)
    env = dict(os.environ, LOGINSVC_VAR_DIR=str(scratch / "var"), REDIS_URL=redis.url,
               DJANGO_SETTINGS_MODULE="loginsvc.settings", DJANGO_SUPERUSER_PASSWORD=PASSWORD)
    env.pop("DATABASE_URL", None)
    if os.environ.get("BENCH_DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    database = "postgresql" if "DATABASE_URL" in env else "sqlite"
    nodes: dict[str, Node] = {}
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        try:
            manage(env, "createsuperuser", "--noinput", "--email", EMAIL)
        except subprocess.CalledProcessError:
            if database == "sqlite":
                raise
            raise SystemExit("BENCH_DATABASE_URL: name an empty database (the bench creates its account "
                             "and product there, and this one has them already)") from None
        manage(dict(env, BENCH_CLIENT_ID=CLIENT_ID, BENCH_SECRET=secret, BENCH_REDIRECT_URI=REDIRECT_URI),
               "shell", "-c", REGISTER)
        for label, extra in (("fast", {}), ("django", {"LOGINSVC_SSO_FAST_PATH": "0"})):
            nodes[label] = Node(dict(env, WEB_CONCURRENCY="1", PROMETHEUS_MULTIPROC_DIR=str(scratch / f"metrics-{label}"),
                                     **extra), "bench", f"bench-sso-{label}", log_path=scratch / f"{label}.log").start()
        port = nodes["fast"].port
        token = _csrf(port)
        status, session = login_once(http.client.HTTPConnection("127.0.0.1", port), token)
        assert status == 200 and session, "benchmark login failed"
        product = Product(port, secret, f"loginsvc_sid={session}; csrftoken={token}")
        started = time.time()
        rows = measure(nodes, product, scratch, rounds=rounds, seconds=seconds)
    finally:
        for node in nodes.values():
            node.stop()
        redis.stop()
    result = {"machine": {"cores": os.cpu_count() or 1,
                          "load_average_at_start": [round(x, 2) for x in load_at_start],
                          "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                          "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))},
              "database": database,
              "node": {"workers": 1, "threads": int(os.environ.get("LOGINSVC_THREADS", "2"))},
              "goal_ratio": GOAL_RATIO, **rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ("sso.json" if database == "sqlite" else f"sso-{database}.json")).write_text(json.dumps(result, indent=2))
    print_table(result)
    return result


LABELS = {"api_session": "GET /api/session, logged in", "userinfo": "GET /oidc/userinfo/, Bearer",
          "introspect": "POST /oidc/introspect/, Basic", "userinfo_django": "  userinfo, Django's path",
          "introspect_django": "  introspection, Django's path", "token_refresh": "POST /oidc/token/, refresh",
          "healthz": "GET /healthz (floor)"}


def print_table(result: dict) -> None:
    machine = result["machine"]
    load = " ".join(f"{x:.2f}" for x in machine["load_average_at_start"])
    print(f"\nSingle sign-on ({result['database']}; {machine['cores']} cores, load average at start {load}; 1 worker, "
          f"{result['node']['threads']} threads; wrk -t1 -c{result['connections']}, {result['rounds']} "
          f"interleaved rounds of {result['seconds_per_round']} s; median round, every round's req/s)")
    print(f"{'endpoint':<34}{'req/s':>8}{'÷ session':>11}{'per round':>11}{'goal':>8}   p50 / p99 ms     rounds")
    for row in ROWS:
        median = result[row]["median"]
        goal = f">= {result['goal_ratio']}" if row in ("userinfo", "introspect") else ""
        bad = result[row]["non_2xx"] + result[row]["socket_errors"]
        print(f"{LABELS[row]:<34}{median['requests_per_s']:>8.0f}{result['ratio_to_api_session'][row]:>11.2f}"
              f"{result['ratio_median_of_rounds'][row]:>11.2f}{goal:>8}   {median['p50']:5.2f} / {median['p99']:6.2f}   {result[row]['rounds']}"
              + (f"   ({bad} non-2xx or socket errors: not valid)" if bad else ""))
    per_round = ", ".join(f"{row} {result['ratio_per_round'][row]}" for row in ("userinfo", "introspect", "token_refresh"))
    print(f"  ratios per round: {per_round}")
    speedup = ", ".join(f"{kind} {factor:.2f}x" for kind, factor in result["fast_path_speedup"].items())
    print(f"  fast path over Django's path: {speedup}; fast node's counts: {result['fast_path_results']}")
    failed = sum(n for key, n in result["fast_path_results"].items() if not key.endswith("/served"))
    if failed:
        print(f"  the fast node handed {failed:.0f} requests to Django (see its log): its rows are not the fast path's")
    print(f"  load average at end: {' '.join(f'{x:.2f}' for x in machine['load_average_at_end'])}")


if __name__ == "__main__":
    run(Path("var/bench"))
