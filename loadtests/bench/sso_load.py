"""How the SSO bench makes its requests: a prepared service, its product, and wrk runs of single-use grants.

A code and a refresh token each work once (a code is spent when redeemed; rotation revokes a
refresh token, and presenting it again revokes its whole family), so no request of the token
endpoint can be repeated, and wrk's Lua scripts here feed it fresh grants:
- refresh grants: one token family per connection. wrk runs one thread per connection, and each
  thread's Lua state holds its own refresh token: every answer carries the next token of that
  family, which the connection's next request presents. So each family has exactly one request in
  flight and no token is ever sent twice; an answer without a token breaks only its own chain
  (and shows as non-2xx answers after it).
- authorization-code redemption: a pool of codes minted just before the round (the real
  authorize endpoint, PKCE S256), larger than the round needs; each request takes one. A pool
  used up before the round's end would show as refused requests (non-2xx), never as a replay.
CPU per request is read from /proc for a process and its children (a node, the database server) and
from getrusage for wrk itself, so a figure can be split between the service, its database and the load.
"""
from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import resource
import secrets
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from deploy.node import manage
from loadtests.bench import wrk
from loadtests.bench.login_bench import EMAIL, PASSWORD, _csrf, login_once

CLIENT_ID = "bench-product"
REDIRECT_URI = "http://127.0.0.1:9/bench-product/callback"
SCOPE = "openid email profile"

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

# setup() runs in wrk's main Lua state once per thread, before the thread starts: each thread (one
# connection) gets its own family's token. The thread's state keeps `token` and replaces it with
# the rotated one from every answer.
REFRESH_LUA = """
local tokens = {%(tokens)s}
local handed = 0
function setup(thread)
  handed = handed + 1
  thread:set("token", tokens[handed])
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local prefix = "grant_type=refresh_token&refresh_token="
function request()
  return wrk.format(nil, nil, nil, prefix .. token)
end
function response(status, headers, body)
  local rotated = body:match('"refresh_token"%%s*:%%s*"([^"]+)"')
  if rotated then token = rotated end
end
"""

# One thread, one pool (wrk calls request() once before the run to check the script: that code is
# never sent). Once the pool is used up every request carries no code, which the token endpoint
# refuses: a round that ran out shows non-2xx answers, and its row is marked not valid.
CODE_LUA = """
local codes = {%(codes)s}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local prefix = "grant_type=authorization_code&redirect_uri=%(redirect_uri)s&code_verifier=%(verifier)s&code="
function request()
  return wrk.format(nil, nil, nil, prefix .. (table.remove(codes) or "pool-used-up"))
end
"""


def refresh_lua(tokens: list[str]) -> str:
    """wrk's script for refresh grants, one family per thread: run it with as many threads as `tokens`."""
    return REFRESH_LUA % {"tokens": ", ".join(f'"{t}"' for t in tokens)}


def code_lua(codes: list[str], verifier: str, redirect_uri: str = REDIRECT_URI) -> str:
    """wrk's script redeeming `codes` (issued for `verifier`'s challenge and `redirect_uri`), each once."""
    return CODE_LUA % {"codes": ", ".join(f'"{c}"' for c in codes), "verifier": verifier,
                       "redirect_uri": quote(redirect_uri, safe="")}


def prepare(env: dict[str, str], secret: str) -> None:
    """An empty database made ready: migrated, the bench's account and its confidential product."""
    manage(env, "migrate", "--noinput", "-v", "0")
    try:
        manage(dict(env, DJANGO_SUPERUSER_PASSWORD=PASSWORD), "createsuperuser", "--noinput", "--email", EMAIL)
    except subprocess.CalledProcessError:
        raise SystemExit("the bench's database must be empty (it creates its account and product there), "
                         "and this one has them already") from None
    manage(dict(env, BENCH_CLIENT_ID=CLIENT_ID, BENCH_SECRET=secret, BENCH_REDIRECT_URI=REDIRECT_URI),
           "shell", "-c", REGISTER)


def pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636 §4.1-4.2."""
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class Product:
    """The registered product's back end, and the browser signed in through POST /api/login it sends
    through the code flow."""

    def __init__(self, port: int, secret: str) -> None:
        self.port, self.secret = port, secret
        self.basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{secret}".encode()).decode()
        token = _csrf(port)
        status, session = login_once(http.client.HTTPConnection("127.0.0.1", port, timeout=30), token)
        if status != 200 or not session:
            raise RuntimeError(f"benchmark login failed: {status}")
        self.cookie = f"loginsvc_sid={session}; csrftoken={token}"

    def _request(self, method: str, path: str, body: str | None = None, headers: dict | None = None,
                 port: int | None = None) -> tuple[int, str, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=30)
        try:
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            return response.status, response.getheader("Location", ""), response.read()
        finally:
            connection.close()

    def authorize(self, challenge: str, port: int | None = None) -> str:
        """One authorization code for the signed-in browser (the product's code_challenge)."""
        query = urlencode({"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
                           "scope": SCOPE, "state": secrets.token_hex(8), "nonce": secrets.token_hex(8),
                           "code_challenge": challenge, "code_challenge_method": "S256"})
        status, location, body = self._request("GET", "/oidc/authorize/?" + query, headers={"Cookie": self.cookie},
                                               port=port)
        code = parse_qs(urlsplit(location).query).get("code", [""])[0]
        if status != 302 or not code:
            raise RuntimeError(f"benchmark authorize failed: {status} {location or body[:200]!r}")
        return code

    def sign_in(self) -> dict:
        """One authorization-code flow with PKCE: the token response (a new token family)."""
        verifier, challenge = pkce()
        form = urlencode({"grant_type": "authorization_code", "code": self.authorize(challenge),
                          "redirect_uri": REDIRECT_URI, "code_verifier": verifier})
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

    def refresh_script(self, families: int, scratch: Path) -> str:
        """wrk's script for refresh grants: `families` new token families, one per connection (and thread)."""
        tokens = [self.sign_in()["refresh_token"] for _ in range(families)]
        script = scratch / "refresh.lua"
        script.write_text(refresh_lua(tokens))
        return str(script)

    def code_script(self, pool: int, scratch: Path, mint_ports: list[int]) -> str:
        """wrk's script redeeming up to `pool` codes minted now, through the nodes on `mint_ports` in parallel."""
        verifier, challenge = pkce()
        ports = [mint_ports[i % len(mint_ports)] for i in range(pool)]
        with concurrent.futures.ThreadPoolExecutor(2 * len(mint_ports)) as minting:
            codes = list(minting.map(lambda port: self.authorize(challenge, port), ports))
        script = scratch / "code.lua"
        script.write_text(code_lua(codes, verifier))
        return str(script)

    def token_run(self, url: str, connections: int, seconds: int, script: str, threads: int = 1) -> dict:
        """A wrk run of the token endpoint with one of the scripts above, the product authenticated."""
        return wrk.run(url + "/oidc/token/", connections, seconds, threads=threads,
                       headers={"Authorization": self.basic}, script=script)


def _stat(pid: str) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # fields from the 3rd on: state, ppid, ...


def tree_cpu(root: int | None) -> float:
    """User + system CPU seconds so far of a process and its children, live or exited (a node's master
    and workers, a PostgreSQL postmaster and its backends, whose own sessions differ); 0 for None."""
    if root is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = _stat(entry)
            except OSError:
                continue  # gone meanwhile: its parent counts it once it has waited for it
            if int(entry) == root or int(fields[1]) == root:
                total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / tick


def worker_cpu(master: int) -> dict[int, float]:
    """CPU seconds so far of each child of `master` (a node's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    shares = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = _stat(entry)
            except OSError:
                continue
            if int(fields[1]) == master:
                shares[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    return shares


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
