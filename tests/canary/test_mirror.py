"""Shadow traffic through a real router and real backends: copies reach the mirror target, answers never reach
the client, only safe requests are copied, a stalled target costs the client nothing, drops are counted."""
from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.support import wait_for

from .conftest import FAST, PIN_SECRET, ROOT, TOKEN, toml_config

SAFE = "/oidc/jwks/"


def requests_to(r, n: int, path: str = SAFE, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes | None = None) -> list[tuple[str, float]]:
    """n requests on one keep-alive connection, no cookies kept: (cluster that answered, seconds) each."""
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            status, h, _ = r.get(path, conn=c, method=method, headers=headers, body=body)
            assert status == 200, status
            out.append((h["x-served-by"].split("/")[0], time.perf_counter() - t0))
    finally:
        c.close()
    return out


def lines(backend: Any, path: str) -> int:
    return sum(1 for line in backend.received() if line.split(b" ")[1].startswith(path.encode()))


def metric(r, line_start: str) -> float:
    text = urllib.request.urlopen(r.admin_url + "/metrics", timeout=5).read().decode()
    return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line_start))


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, -(-len(ordered) * 99 // 100) - 1)]


@pytest.fixture
def make(backends, router_factory):
    def build(green: tuple[str, ...] = (), **sections: Any):
        clusters = {"blue": backends("blue", 1), "green": backends("green", 1, *green)}
        router = router_factory(config=toml_config(clusters, access_log=False, **FAST, **sections))
        return router, clusters
    return build


def test_copies_reach_the_mirror_target_and_the_client_sees_only_its_own_answer(make) -> None:
    router, clusters = make()
    router.ramp(0)
    st = router.api("POST", "/api/mirror", {"cluster": "green", "percent": 50})
    assert st["mirror"]["cluster"] == "green" and st["mirror"]["percent"] == 50 and st["percent"] == 0
    answers = requests_to(router, 40)
    assert {cluster for cluster, _ in answers} == {"blue"}             # every answer is the real one
    green = clusters["green"][0]
    wait_for(lambda: lines(green, SAFE) == 20, 5, "20 copies on green (50 % of 40, exactly)")
    wait_for(lambda: router.status()["mirror"]["answered"] == 20, 5, "every copy answered")
    st = router.status()["mirror"]
    assert (st["copied"], st["failed"], st["in_flight"], sum(st["dropped"].values())) == (20, 0, 0, 0), st
    assert metric(router, "canary_mirror_copies_total") == 20
    assert metric(router, 'canary_mirror_percent{cluster="green"}') == 50
    # off: nothing more is copied
    router.api("POST", "/api/mirror", {"cluster": "green", "percent": 0})
    assert router.status()["mirror"] is None
    requests_to(router, 10)
    time.sleep(0.2)
    assert lines(green, SAFE) == 20


def test_only_safe_requests_are_copied_never_a_post_a_cookie_or_a_credential(make) -> None:
    router, clusters = make()
    router.ramp(0)
    router.api("POST", "/api/mirror", {"cluster": "green", "percent": 100})
    requests_to(router, 5, method="POST", body=b"grant_type=x")
    requests_to(router, 5, headers={"Cookie": "sessionid=abc"})
    requests_to(router, 5, headers={"authorization": "Bearer secret"})
    requests_to(router, 5, path="/api/session")                          # not a listed path
    # a body (even on GET): a copy is a head only, so it would leave the node waiting
    requests_to(router, 3, path="/.well-known/openid-configuration", headers={"Content-Length": "5"}, body=b"hello")
    requests_to(router, 2, path="/.well-known/openid-configuration", headers={"Transfer-Encoding": "chunked"},
                body=b"5\r\nhello\r\n0\r\n\r\n")
    requests_to(router, 3, path="/.well-known/openid-configuration")     # listed: copied
    green = clusters["green"][0]
    wait_for(lambda: len(green.received()) >= 3, 5, "the three copies")
    time.sleep(0.3)
    assert [line.split(b" ")[:2] for line in green.received() if not line.startswith(b"GET /readyz")] == \
        [[b"GET", b"/.well-known/openid-configuration"]] * 3


def test_a_stalled_mirror_target_leaves_the_clients_p99_unchanged_and_overflow_is_dropped(make) -> None:
    router, clusters = make(green=("--delay-ms", "2000"), mirror={"max_in_flight": 16})
    router.ramp(0)
    requests_to(router, 20)                                           # warm connections
    baseline = [t for _, t in requests_to(router, 150)]
    router.api("POST", "/api/mirror", {"cluster": "green", "percent": 100})
    mirrored = requests_to(router, 150)
    assert {cluster for cluster, _ in mirrored} == {"blue"}
    with_copies = [t for _, t in mirrored]
    # every copy waits 2 s on green; none of that reaches the client
    assert p99(with_copies) < max(2 * p99(baseline), p99(baseline) + 0.05) and p99(with_copies) < 0.5, \
        (p99(baseline), p99(with_copies))
    st = router.status()["mirror"]
    assert st["copied"] == 16 and st["dropped"]["in_flight"] == 134, st     # 16 in flight, the rest dropped
    assert metric(router, 'canary_mirror_dropped_total{reason="in_flight"}') == 134
    wait_for(lambda: router.status()["mirror"]["answered"] == 16, 10, "the stalled copies answered after 2 s")
    shadow = router.api("GET", "/api/live")    # copies are not the cluster's traffic: its records stay empty
    assert shadow["clusters"]["green"] == []


def test_copies_are_dropped_first_at_the_canarys_limit_and_under_router_load(make) -> None:
    router, _ = make(green=("--delay-ms", "1000"), cluster_limits={"green": {"max_concurrent": 3}})
    router.ramp(0)
    router.api("POST", "/api/mirror", {"cluster": "green", "percent": 100})
    requests_to(router, 10)
    st = router.status()["mirror"]
    assert st["copied"] == 3 and st["dropped"]["cluster_limit"] == 7, st
    loaded, _ = make(mirror={"max_router_requests": 1})       # every request is one in flight: nothing copied
    loaded.ramp(0)
    loaded.api("POST", "/api/mirror", {"cluster": "green", "percent": 100})
    requests_to(loaded, 5)
    st = loaded.status()["mirror"]
    assert st["copied"] == 0 and st["dropped"]["router_load"] == 5, st


def test_a_timed_out_copy_is_cut_and_counted_failed(make) -> None:
    router, _ = make(green=("--delay-ms", "3000"), mirror={"timeout": 0.3})
    router.ramp(0)
    router.api("POST", "/api/mirror", {"cluster": "green", "percent": 100})
    requests_to(router, 4)
    wait_for(lambda: router.status()["mirror"]["failed"] == 4, 5, "four copies cut at 0.3 s")
    assert router.status()["mirror"]["in_flight"] == 0
    assert metric(router, 'canary_mirror_answers_total{outcome="failed"}') == 4


@pytest.mark.parametrize("body, message", [
    ({"cluster": "purple", "percent": 5}, "cluster: one of blue, green"),
    ({"cluster": "green", "percent": 101}, "percent must be a number between 0 and 100"),
    ({"cluster": "green", "percent": True}, "percent must be a number between 0 and 100"),
    ({"cluster": "green", "percent": 5, "paths": []}, "paths: unknown key"),
])
def test_bad_mirror_requests_name_the_key(make, body: dict[str, Any], message: str) -> None:
    router, _ = make()
    with pytest.raises(urllib.error.HTTPError) as e:
        router.api("POST", "/api/mirror", body)
    assert e.value.code == 400 and message in e.value.read().decode()


def test_cli_mirror_and_status_line(make) -> None:
    router, _ = make()
    env = dict(os.environ, CANARY_ADMIN_TOKEN=TOKEN, CANARY_PIN_SECRET=PIN_SECRET)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "canary", *args, "--admin", router.admin_url],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=30)
    done = cli("mirror", "green", "25%")
    assert done.returncode == 0 and "mirror: 25% of safe requests copied to green" in done.stdout, done.stdout
    for args, message in ((["mirror", "green", "x"], "PERCENT must be a number"),
                          (["mirror", "green", "150"], "between 0 and 100"),
                          (["mirror", "purple", "5"], "cluster: one of blue, green")):
        bad = cli(*args)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad
    assert "mirror:" not in cli("mirror", "green", "0").stdout
