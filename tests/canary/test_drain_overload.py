"""Drain/undrain of clusters and nodes; overload gives a fast 503 with Retry-After."""
from __future__ import annotations

import http.client
import threading
import time

from .conftest import FAST, toml_config


def served(r, n: int = 40, cookie: str | None = None) -> list[str]:
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    out = []
    for _ in range(n):
        st, h, _ = r.get("/", conn=c, cookie=cookie)
        assert st == 200
        out.append(h["x-served-by"])
    c.close()
    return out


def test_drain_undrain_cluster_and_node(backends, router_factory):
    blue = backends("blue", 2)
    green = backends("green", 1)
    cfg = toml_config({"blue": blue, "green": green}, access_log=False, **FAST,
                      share={"slow_start_window": 0.0})
    r = router_factory(config=cfg)
    assert set(served(r)) == {"blue/blue-1", "blue/blue-2"}
    st = r.api("POST", "/api/drain", {"target": "blue-2"})
    assert st["drained"] == ["blue/blue-2"]
    assert set(served(r)) == {"blue/blue-1"}
    r.api("POST", "/api/drain", {"target": "blue"})
    assert set(served(r)) == {"green/green-1"}      # everything, pinned or not, to the other cluster
    r.api("POST", "/api/undrain", {"target": "blue"})
    r.api("POST", "/api/undrain", {"target": "blue/blue-2"})
    assert set(served(r)) == {"blue/blue-1", "blue/blue-2"}
    assert r.status()["drained"] == []


def limited_router(backends, router_factory, max_concurrent: int, max_queue: int, queue_timeout: float):
    """A router whose blue cluster admits `max_concurrent` requests and queues `max_queue` more."""
    cfg = toml_config({"blue": backends("blue", 1), "green": backends("green", 1)}, access_log=False, **FAST,
                      cluster_limits={"blue": {"max_concurrent": max_concurrent, "max_queue": max_queue}},
                      limits={"queue_timeout": queue_timeout})
    return router_factory(config=cfg)


def test_overload_fast_503(backends, router_factory):
    r = limited_router(backends, router_factory, max_concurrent=2, max_queue=2, queue_timeout=5.0)
    results: list[tuple[int, float, str | None]] = []
    lock = threading.Lock()

    def one() -> None:
        t0 = time.monotonic()
        st, h, _ = r.get("/slow?ms=1500")
        with lock:
            results.append((st, time.monotonic() - t0, h.get("retry-after")))
    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    ok = [x for x in results if x[0] == 200]
    rejected = [x for x in results if x[0] == 503]
    assert len(results) == 10
    assert len(ok) == 4 and len(rejected) == 6, results     # 2 running + 2 queued
    assert all(x[1] < 1.0 and x[2] == "1" for x in rejected)  # fast, with Retry-After


def test_queue_timeout_503(backends, router_factory):
    r = limited_router(backends, router_factory, max_concurrent=1, max_queue=5, queue_timeout=0.3)
    results = []
    threads = [threading.Thread(target=lambda: results.append(r.get("/slow?ms=1500")[0])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == [200, 503, 503]


def test_panic_never_sends_traffic_to_a_drained_cluster(backends, router_factory):
    """Both clusters unavailable (blue dead, green drained): panic ignores health, not the drain."""
    blue = backends("blue", 1)
    green = backends("green", 1)
    r = router_factory(config=toml_config({"blue": blue, "green": green}, access_log=False, **FAST))
    r.api("POST", "/api/drain", {"target": "green"})
    blue[0].kill()
    r.wait_status(lambda s: s["clusters"]["blue"]["nodes"][0]["state"] != "healthy", timeout=3)
    st, h, _ = r.get("/")
    assert st == 503 and h.get("retry-after")
