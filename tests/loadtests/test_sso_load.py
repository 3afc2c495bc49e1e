"""The SSO bench's wrk scripts (loadtests/bench/sso_load.py) against a token endpoint that keeps score.

A code and a refresh token work once (RFC 6749 §4.1.2, RFC 9700 §4.14.2), so the bench's figures
only mean something if wrk never presents one twice: a replayed refresh token would revoke its
family and turn the rest of the round into errors. The endpoint here rotates like the provider
(each answer carries the family's next token) and records every grant it is shown.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from loadtests.bench import sso_load, wrk

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="needs Debian's wrk (apt-get install wrk)")


class TokenEndpoint(ThreadingHTTPServer):
    """Answers POST /oidc/token/ as the provider would, and remembers what it was shown."""

    daemon_threads = True

    def __init__(self, families: int = 0, codes: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.current = {f"rt-{f}-0": f for f in range(families)}  # live token -> family
        self.issued: Counter[int] = Counter()                       # family -> tokens issued after the first
        self.codes = {f"code-{i}" for i in range(codes)}
        self.presented: list[tuple[str, str]] = []                 # (grant type, value), in order
        self.refused = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def grant(self, form: dict[str, str]) -> dict[str, str] | None:
        with self.lock:
            if form.get("grant_type") == "refresh_token":
                value = form.get("refresh_token", "")
                self.presented.append(("refresh_token", value))
                family = self.current.pop(value, None)
                if family is None:
                    return None
                self.issued[family] += 1
                rotated = f"rt-{family}-{self.issued[family]}"
                self.current[rotated] = family
                return {"access_token": "at", "refresh_token": rotated}
            value = form.get("code", "")
            self.presented.append(("authorization_code", value))
            if value not in self.codes or form.get("code_verifier") != "verifier" or \
                    form.get("redirect_uri") != sso_load.REDIRECT_URI:
                return None
            self.codes.remove(value)
            return {"access_token": "at", "refresh_token": "new"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TokenEndpoint

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        answer = self.server.grant({k: v[0] for k, v in parse_qs(body).items()})
        time.sleep(0.002)  # a token endpoint takes a while: several requests are in flight at once
        if answer is None:
            self.server.refused += 1
        payload = json.dumps(answer or {"error": "invalid_grant"}).encode()
        self.send_response(200 if answer else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def run_script(tmp_path: Path, endpoint: TokenEndpoint, text: str, connections: int, threads: int,
               seconds: int) -> dict:
    script = tmp_path / "script.lua"
    script.write_text(text)
    try:
        return wrk.run(endpoint.url + "/oidc/token/", connections, seconds, threads=threads, script=str(script))
    finally:
        endpoint.shutdown()


def test_refresh_rounds_present_each_token_once_one_family_per_connection(tmp_path: Path) -> None:
    """RFC 9700 §4.14.2: every request presents the newest token of its own family, never one twice."""
    endpoint = TokenEndpoint(families=4)
    result = run_script(tmp_path, endpoint, sso_load.refresh_lua(list(endpoint.current)), 4, 4, 1)
    tokens = [value for kind, value in endpoint.presented]
    assert endpoint.refused == 0 and result["non_2xx"] == 0
    assert len(tokens) == len(set(tokens)), "a refresh token was presented twice"
    assert sorted(endpoint.issued) == [0, 1, 2, 3], "every connection keeps its own family going"
    assert min(endpoint.issued.values()) > 10


def test_code_rounds_redeem_each_code_once_and_show_a_used_up_pool_as_refusals(tmp_path: Path) -> None:
    """RFC 6749 §4.1.2: a code is used once. A pool too small for the round is not replayed: the
    requests after it carry no code, the endpoint refuses them, and wrk counts them as non-2xx,
    which the bench's table marks as not valid."""
    endpoint = TokenEndpoint(codes=60)
    result = run_script(tmp_path, endpoint, sso_load.code_lua([f"code-{i}" for i in range(60)], "verifier"), 4, 1, 1)
    codes = [value for kind, value in endpoint.presented if value.startswith("code-")]
    assert len(codes) == len(set(codes)), "a code was presented twice"
    assert len(codes) == 59  # wrk calls request() once before the run to check the script: one is never sent
    assert ("authorization_code", "pool-used-up") in endpoint.presented
    assert result["non_2xx"] > 0
