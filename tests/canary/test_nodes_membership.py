"""Run-time cluster membership (EDS-style): PUT/GET /api/clusters/<cluster>/nodes against real routers and
real backends; removal under load loses nothing; the list is shared (Redis, file) and survives restarts."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from deploy.node import free_port
from tests.support import wait_for

from .conftest import FAST, PY, ROOT, TOKEN, Backend, toml_config


@pytest.fixture
def node_factory(tmp_path: Path):
    """Factory: node_factory(cluster, name) -> a started demo backend answering X-Served-By cluster/name."""
    made: list[Backend] = []

    def make(cluster: str, name: str) -> Backend:
        b = Backend(cluster, name, free_port(), tmp_path / f"{name}.log", [])
        made.append(b)
        return b.start()
    yield make
    for b in made:
        b.kill()


def spec(b: Backend, weight: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"name": b.node, "address": f"127.0.0.1:{b.port}"}
    if weight is not None:
        d["weight"] = weight
    return d


def put_nodes(r, cluster: str, nodes: list[dict[str, Any]]) -> Any:
    return r.api("PUT", f"/api/clusters/{cluster}/nodes", {"nodes": nodes})


def get_nodes(r, cluster: str) -> Any:
    return r.api("GET", f"/api/clusters/{cluster}/nodes")


def admin_error(r, method: str, path: str, data: bytes | None, token: str = TOKEN) -> tuple[int, str]:
    """(status, error message) of a request that must fail."""
    req = urllib.request.Request(r.admin_url + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            raise AssertionError(f"expected an error, got {resp.status}: {resp.read()!r}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())["error"]


def served_by(r, n: int) -> list[str]:
    out = []
    for _ in range(n):
        status, h, _ = r.get("/")
        assert status == 200
        out.append(h["x-served-by"])
    return out


def wait_served(r, label: str, timeout: float) -> float:
    """Seconds until a request is served by `label`; fails after `timeout`."""
    t0 = time.monotonic()
    try:
        wait_for(lambda: r.get("/")[1].get("x-served-by") == label, timeout, f"{label} serving", interval=0.01)
    except TimeoutError:
        raise AssertionError(f"{label} served nothing within {timeout}s; status: {r.status()}") from None
    return time.monotonic() - t0


def node_states(st: dict[str, Any], cluster: str) -> dict[str, str]:
    return {n["name"]: n["state"] for n in st["clusters"][cluster]["nodes"]}


def established(port: int) -> int:
    """TCP connections in ESTABLISHED state with `port` at either end (Linux /proc/net/tcp)."""
    n = 0
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            parts = ln.split()
            ports = {int(parts[1].rsplit(":", 1)[1], 16), int(parts[2].rsplit(":", 1)[1], 16)}
            n += parts[3] == "01" and port in ports
    return n


def wait_no_connections(port: int, timeout: float) -> None:
    wait_for(lambda: not established(port), timeout, f"the connections to :{port} closing")


class Looper(threading.Thread):
    """A client looping GETs on one keep-alive connection, recording (start time, status, served by)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.results: list[tuple[float, int, str]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                self.results.append((t, resp.status, resp.getheader("X-Served-By") or ""))
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.close()


@pytest.fixture
def blue_green(backends, router_factory):
    blue, green = backends("blue", 1), backends("green", 1)
    r = router_factory(config=toml_config({"blue": blue, "green": green}, access_log=False, **FAST))
    return r, blue[0], green[0]


def test_add_then_remove_a_node_under_load(blue_green, node_factory):
    r, b1, _ = blue_green
    doc = get_nodes(r, "blue")
    assert doc == {"cluster": "blue", "source": "config", "nodes": [spec(b1, 1)]}
    b2 = node_factory("blue", "blue-2")
    t0 = time.monotonic()
    st = put_nodes(r, "blue", [spec(b1), spec(b2)])
    assert [n["name"] for n in st["clusters"]["blue"]["nodes"]] == ["blue-1", "blue-2"]
    wait_served(r, "blue/blue-2", 2.0)
    assert time.monotonic() - t0 < 2.0                          # registered -> serving
    assert get_nodes(r, "blue")["source"] == "state"
    assert set(served_by(r, 20)) == {"blue/blue-1", "blue/blue-2"}   # both take traffic now

    # Slow requests in flight on both nodes, and a client looping GETs, while blue-1 is removed.
    slow: list[tuple[int, str]] = []

    def slow_get() -> None:
        s, h, _ = r.get("/slow?ms=800")
        slow.append((s, h.get("x-served-by", "")))
    slow_threads = [threading.Thread(target=slow_get, daemon=True) for _ in range(4)]
    loopers = [Looper(r.port) for _ in range(2)]
    for t in slow_threads + loopers:
        t.start()
    time.sleep(0.3)
    st = put_nodes(r, "blue", [spec(b2)])
    removed_at = time.monotonic()
    assert [n["name"] for n in st["clusters"]["blue"]["nodes"]] == ["blue-2"]
    for t in slow_threads:
        t.join(5)
    # pooled and finished in-flight connections to the removed node are closed, its health check stopped
    wait_no_connections(b1.port, 1.0)
    checks = b1.received().count(b"GET /readyz")
    time.sleep(0.4)                                             # 4 health-check intervals
    assert b1.received().count(b"GET /readyz") == checks
    b1.kill()                      # as `deploy scale` does after removing it: nothing may notice
    time.sleep(0.3)
    for lp in loopers:
        lp.stop.set()
        lp.join(5)
    results = [x for lp in loopers for x in lp.results]
    assert not [e for lp in loopers for e in lp.errors]
    assert len(results) > 50 and all(s == 200 for _, s, _ in results)
    assert not [x for x in results if x[0] > removed_at and x[2] == "blue/blue-1"]
    assert len(slow) == 4 and all(s == 200 for s, _ in slow), slow
    assert "blue/blue-1" in {sb for _, sb in slow}           # in-flight requests on the removed node finished
    metrics = urllib.request.urlopen(r.admin_url + "/metrics", timeout=5).read().decode()
    assert 'node="blue-2"' in metrics and 'node="blue-1"' not in metrics
    assert get_nodes(r, "blue")["nodes"] == [spec(b2, 1)]
    assert r.status()["clusters"]["blue"]["available"]


def test_kept_nodes_keep_their_state_and_a_new_node_waits_for_its_health_check(blue_green, node_factory, tmp_path):
    r, b1, _ = blue_green
    for _ in range(5):
        r.get("/")
    before = {n["name"]: n for n in r.status()["clusters"]["blue"]["nodes"]}["blue-1"]["requests"]
    assert before >= 5
    unready = Backend("blue", "blue-2", free_port(), tmp_path / "u.log", ["--unready"]).start()
    try:
        put_nodes(r, "blue", [spec(b1), spec(unready, 3)])
        time.sleep(0.5)
        st = r.status()
        nodes = {n["name"]: n for n in st["clusters"]["blue"]["nodes"]}
        assert nodes["blue-1"]["requests"] >= before          # same name and address: the same node
        assert nodes["blue-2"]["state"] == "unhealthy" and nodes["blue-2"]["weight"] == 3
        assert set(served_by(r, 10)) == {"blue/blue-1"}        # never routed before a good health check
    finally:
        unready.kill()


def test_drain_by_label_applies_to_new_nodes_and_removal_forgets_it(blue_green, node_factory):
    r, b1, _ = blue_green
    b2 = node_factory("blue", "blue-2")
    r.api("POST", "/api/drain", {"target": "blue/blue-2"})        # not a member yet
    put_nodes(r, "blue", [spec(b1), spec(b2)])
    time.sleep(0.3)
    assert node_states(r.status(), "blue")["blue-2"] == "drained"
    assert set(served_by(r, 10)) == {"blue/blue-1"}
    r.api("POST", "/api/undrain", {"target": "blue-2"})
    wait_served(r, "blue/blue-2", 2.0)
    r.api("POST", "/api/drain", {"target": "blue-2"})
    st = put_nodes(r, "blue", [spec(b1)])
    assert st["drained"] == []                                    # its drain went with it
    code, msg = admin_error(r, "POST", "/api/drain", b'{"target": "no-such-node"}')
    assert code == 400 and "no-such-node" in msg


def test_address_change_replaces_the_node(blue_green, node_factory):
    r, b1, _ = blue_green
    b1b = node_factory("blue", "blue-1")                          # same name, new address
    put_nodes(r, "blue", [spec(b1b)])
    b1.kill()
    wait_served(r, "blue/blue-1", 2.0)
    assert all(s == 200 for s in (r.get("/")[0] for _ in range(10)))
    assert get_nodes(r, "blue")["nodes"] == [spec(b1b, 1)]


BAD = [
    (b'{"nodes": []}', 400, "at least one node"),
    (b'{}', 400, "nodes: required"),
    (b'{"nodes": "x"}', 400, "expected a list"),
    (b'{"nodes": [], "extra": 1}', 400, "extra: unknown key"),
    (b'not json', 400, "body must be JSON"),
    (b'[1]', 400, "JSON object"),
    (b'{"nodes": [1]}', 400, "nodes[0]: expected an object"),
    (b'{"nodes": [{"name": "bad name", "address": "127.0.0.1:1"}]}', 400, "nodes[0].name"),
    (b'{"nodes": [{"address": "127.0.0.1:1"}]}', 400, "nodes[0].name: required"),
    (b'{"nodes": [{"name": "b", "address": "nohost"}]}', 400, "nodes[0].address: expected HOST:PORT"),
    (b'{"nodes": [{"name": "b", "address": "127.0.0.1:99999"}]}', 400, "out of range"),
    (b'{"nodes": [{"name": "b", "address": "127.0.0.1:0"}]}', 400, "port must be"),
    (b'{"nodes": [{"name": "b", "address": "a\\r\\nX: y:80"}]}', 400, "invalid host"),
    (b'{"nodes": [{"name": "b", "address": "127.0.0.1:1", "weight": 0}]}', 400, "weight"),
    (b'{"nodes": [{"name": "b", "address": "127.0.0.1:1", "weight": true}]}', 400, "weight"),
    (b'{"nodes": [{"name": "b", "address": "127.0.0.1:1", "port": 2}]}', 400, "nodes[0].port: unknown key"),
    (b'{"nodes": [{"name": "b", "address": "127.0.0.1:1"}, {"name": "b", "address": "127.0.0.1:2"}]}', 400,
     "duplicate name 'b'"),
    (b'{"nodes": [{"name": "a", "address": "127.0.0.1:1"}, {"name": "b", "address": "127.0.0.1:1"}]}', 400,
     "duplicate address"),
    (b'{"nodes": [{"name": "green-1", "address": "127.0.0.1:1"}]}', 400, "already a node of cluster 'green'"),
    (b'{"nodes": [{"name": "green", "address": "127.0.0.1:1"}]}', 400, "is a cluster name"),
]


def test_validation_errors_are_400_or_404_with_one_message(blue_green):
    r, b1, _ = blue_green
    for body, code, msg in BAD:
        got = admin_error(r, "PUT", "/api/clusters/blue/nodes", body)
        assert got[0] == code and msg in got[1], (body, got)
    assert admin_error(r, "PUT", "/api/clusters/nosuch/nodes", b'{"nodes": []}') == \
        (404, "unknown cluster: 'nosuch'")
    assert admin_error(r, "GET", "/api/clusters/nosuch/nodes", None)[0] == 404
    assert admin_error(r, "DELETE", "/api/clusters/blue/nodes", None)[0] == 405
    assert admin_error(r, "GET", "/api/clusters/blue/nodes", None, token="wrong")[0] == 401
    assert get_nodes(r, "blue") == {"cluster": "blue", "source": "config", "nodes": [spec(b1, 1)]}
    assert r.status()["version"] == 0                              # nothing was written


def test_membership_survives_a_restart_with_file_state(backends, node_factory, router_factory, tmp_path):
    blue, green = backends("blue", 1), backends("green", 1)
    args = ["--cluster", f"blue=127.0.0.1:{blue[0].port}", "--cluster", f"green=127.0.0.1:{green[0].port}",
            "--state", str(tmp_path / "st.json"), "--no-access-log"]
    r = router_factory(args=args)
    b2 = node_factory("blue", "blue-9")
    put_nodes(r, "blue", [spec(b2, 2)])
    r.stop()
    r2 = router_factory(args=args)
    assert get_nodes(r2, "blue") == {"cluster": "blue", "source": "state", "nodes": [spec(b2, 2)]}
    assert set(served_by(r2, 5)) == {"blue/blue-9"}
    assert json.loads((tmp_path / "st.json").read_text())["nodes"]["blue"] == [spec(b2, 2)]


def test_an_invalid_node_list_in_the_state_file_is_ignored(backends, node_factory, router_factory, tmp_path):
    """A hand-edited state file with a bad node list keeps the current nodes; a good one applies."""
    blue, green = backends("blue", 1), backends("green", 1)
    state = tmp_path / "st.json"
    args = ["--cluster", f"blue=127.0.0.1:{blue[0].port}", "--cluster", f"green=127.0.0.1:{green[0].port}",
            "--state", str(state), "--no-access-log"]
    r = router_factory(args=args)
    good = json.loads(state.read_text())
    state.write_text(json.dumps(dict(good, nodes={"blue": [{"name": "x", "address": "nope"}]})))
    os.utime(state, (time.time() + 1, time.time() + 1))
    time.sleep(0.6)
    assert get_nodes(r, "blue")["nodes"] == [spec(blue[0], 1)]
    assert set(served_by(r, 5)) == {"blue/blue-1"}
    b2 = node_factory("blue", "blue-2")
    state.write_text(json.dumps(dict(good, nodes={"blue": [spec(b2)]})))
    os.utime(state, (time.time() + 2, time.time() + 2))
    r.wait_status(lambda s: list(node_states(s, "blue")) == ["blue-2"], timeout=2.0)
    wait_served(r, "blue/blue-2", 2.0)
    assert "invalid node list for cluster blue" in r.stdout.read_text()


def test_two_routers_sharing_redis_pick_up_a_change_within_1s(backends, node_factory, router_factory,
                                                               redis_url):
    blue, green = backends("blue", 1), backends("green", 1)
    cfg = toml_config({"blue": blue, "green": green}, access_log=False, **FAST)
    r1 = router_factory(config=cfg, args=["--redis", redis_url])
    r2 = router_factory(config=cfg, args=["--redis", redis_url])
    b2 = node_factory("blue", "blue-2")
    put_nodes(r1, "blue", [spec(blue[0]), spec(b2)])
    t0 = time.monotonic()
    for r in (r1, r2):
        r.wait_status(lambda s: node_states(s, "blue").get("blue-2") == "healthy", timeout=1.0)
    assert time.monotonic() - t0 < 1.0
    wait_served(r2, "blue/blue-2", 1.0)
    put_nodes(r2, "blue", [spec(b2)])
    t0 = time.monotonic()
    r1.wait_status(lambda s: list(node_states(s, "blue")) == ["blue-2"], timeout=1.0)
    assert time.monotonic() - t0 < 1.0
    assert set(served_by(r1, 10)) == {"blue/blue-2"}


# -- ops verb ------------------------------------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CANARY_ADMIN_TOKEN=TOKEN)
    env.pop("REDIS_URL", None)
    return subprocess.run([PY, "-m", "canary", *args], capture_output=True, text=True, timeout=30, cwd=ROOT, check=False,
                          env=env)


def test_cli_nodes_verb(blue_green, node_factory):
    r, b1, _ = blue_green
    a = ["--admin", r.admin_url]
    p = cli("nodes", "blue", *a)
    assert p.returncode == 0, p.stderr
    assert "blue-1" in p.stdout and f"127.0.0.1:{b1.port}" in p.stdout and "configuration" in p.stdout
    b2 = node_factory("blue", "blue-2")
    p = cli("nodes", "blue", "--set", f"blue-1=127.0.0.1:{b1.port},blue-2=127.0.0.1:{b2.port}@2", *a)
    assert p.returncode == 0, p.stderr
    assert "blue-2" in p.stdout and "weight=2" in p.stdout
    assert get_nodes(r, "blue")["nodes"] == [spec(b1, 1), spec(b2, 2)]
    wait_served(r, "blue/blue-2", 2.0)


@pytest.mark.parametrize("args", [
    ["nodes", "blue", "--set", "garbage"],
    ["nodes", "blue", "--set", ""],
    ["nodes", "blue", "--set", "blue-1=nohost"],
    ["nodes", "blue", "--set", "bad name=127.0.0.1:1"],
    ["nodes", "blue", "--set", "a=127.0.0.1:1,a=127.0.0.1:2"],
    ["nodes", "blue", "--set", "a=127.0.0.1:1,b=127.0.0.1:1"],
    ["nodes", "blue", "--set", "a=127.0.0.1:1@0"],
    ["nodes", "blue", "--set", "a=127.0.0.1:1@x"],
    ["nodes", "blue", "--set", "green-1=127.0.0.1:1"],    # rejected by the router: name of a green node
    ["nodes", "nosuch"],
    ["nodes", "nosuch", "--set", "a=127.0.0.1:1"],
    ["nodes"],
])
def test_cli_nodes_bad_arguments_exit_2_one_line(blue_green, args):
    r, b1, _ = blue_green
    p = cli(*args, "--admin", r.admin_url)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("canary: error:"), p.stderr
    assert get_nodes(r, "blue")["nodes"] == [spec(b1, 1)]
