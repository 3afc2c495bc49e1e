"""State survives a restart (file store) and propagates between routers through Redis within 1 s."""
from __future__ import annotations

import time

from tests.support import wait_for

from .conftest import FAST, toml_config


def test_file_state_survives_restart(backends, router_factory, tmp_path):
    blue, green = backends("blue", 1), backends("green", 1)
    args = ["--cluster", f"blue=127.0.0.1:{blue[0].port}", "--cluster", f"green=127.0.0.1:{green[0].port}",
            "--state", str(tmp_path / "st.json"), "--no-access-log"]
    r = router_factory(args=args)
    r.ramp(35)
    r.api("POST", "/api/drain", {"target": "green-1"})
    r.stop()
    r2 = router_factory(args=args)
    st = r2.status()
    assert st["percent"] == 35 and st["drained"] == ["green/green-1"]
    assert not list(tmp_path.glob(".canary-state.*"))   # atomic writes leave no temp files


def test_redis_state_propagates_within_1s(backends, router_factory, redis_url, tmp_path):
    blue, green = backends("blue", 1), backends("green", 1)
    cfg = toml_config({"blue": blue, "green": green}, access_log=False, **FAST)
    r1 = router_factory(config=cfg, args=["--redis", redis_url])
    r2 = router_factory(config=cfg, args=["--redis", redis_url])
    for pct in (10, 60, 0):
        r1.ramp(pct)
        t0 = time.monotonic()
        r2.wait_status(lambda s, p=pct: s["percent"] == p, timeout=1.0)
        assert time.monotonic() - t0 < 1.0
    r2.api("POST", "/api/promote")
    r1.wait_status(lambda s: s["stable"] == "green", timeout=1.0)
    r1.api("POST", "/api/drain", {"target": "blue"})
    r2.wait_status(lambda s: s["drained"] == ["blue"], timeout=1.0)
    # survives restart of every router: the state lives in Redis
    r1.stop()
    r2.stop()
    r3 = router_factory(config=cfg, args=["--redis", redis_url])
    st = r3.status()
    assert st["stable"] == "green" and st["drained"] == ["blue"]


def test_an_invalid_state_file_does_not_stop_watching_it(backends, router_factory, tmp_path):
    """A hand-edited state file with a bad value is skipped; the next good one still applies."""
    import json
    import os

    blue, green = backends("blue", 1), backends("green", 1)
    state = tmp_path / "st.json"
    args = ["--cluster", f"blue=127.0.0.1:{blue[0].port}", "--cluster", f"green=127.0.0.1:{green[0].port}",
            "--state", str(state), "--no-access-log"]
    r = router_factory(args=args)
    r.ramp(10)
    good = json.loads(state.read_text())
    state.write_text(json.dumps(dict(good, percent="not a number")))
    os.utime(state, (time.time() + 1, time.time() + 1))
    time.sleep(0.6)
    assert r.status()["percent"] == 10          # the bad document was ignored
    state.write_text(json.dumps(dict(good, percent=40)))
    os.utime(state, (time.time() + 2, time.time() + 2))
    r.wait_status(lambda s: s["percent"] == 40, timeout=2.0)


def test_a_redis_restarted_empty_gets_the_state_back_from_a_running_router(backends, router_factory, tmp_path):
    """Redis without persistence loses the document on a restart; the routers still route by it and put it
    back, so a router started afterwards does not fall back to the configured defaults."""
    from deploy.redis_server import RedisServer
    from tests.plugin import free_port

    server = RedisServer(tmp_path / "redis", port=free_port()).start()
    try:
        blue, green = backends("blue", 1), backends("green", 1)
        cfg = toml_config({"blue": blue, "green": green}, access_log=False, **FAST)
        r1 = router_factory(config=cfg, args=["--redis", server.url])
        r1.ramp(37)
        r1.api("POST", "/api/drain", {"target": "green"})
        server.kill()
        server.start()
        wait_for(lambda: server.client().get("canary:state") is not None, 5,
                 "the running router putting the state back")
        r2 = router_factory(config=cfg, args=["--redis", server.url])
        st = r2.status()
        assert st["percent"] == 37 and st["drained"] == ["green"]
    finally:
        server.kill()
