"""Outlier ejection on runs of 5xx; default active health checks detect a dead node within 1 s."""
from __future__ import annotations

import http.client
import signal
import time
import urllib.request

from .conftest import toml_config


def test_consecutive_5xx_ejects_node(backends, router_factory):
    good = backends("blue", 1)[0]
    bad = backends("blue", 1, "--status", "500")[0]
    bad.node = "blue-2"
    green = backends("green", 1)
    cfg = toml_config({"blue": [good, bad], "green": green}, access_log=False,
                      outlier_detection={"consecutive_5xx": 5, "base_ejection_time": 30.0,
                                         "max_ejection_percent": 50})
    r = router_factory(config=cfg)
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    codes = [r.get("/", conn=c)[0] for _ in range(40)]
    c.close()
    assert codes.count(500) == 5, codes      # exactly the run that triggered the ejection
    assert codes[-20:] == [200] * 20
    st = r.status()
    bad_state = [n for n in st["clusters"]["blue"]["nodes"] if n["address"].endswith(f":{bad.port}")][0]
    assert bad_state["state"] == "ejected" and bad_state["ejections"] == 1
    text = urllib.request.urlopen(r.admin_url + "/metrics", timeout=5).read().decode()
    assert 'reason="consecutive_5xx"' in text


def test_default_health_check_detects_dead_node_within_1s(backends, router_factory):
    blue = backends("blue", 2)
    green = backends("green", 1)
    r = router_factory(config=toml_config({"blue": blue, "green": green}, access_log=False))
    time.sleep(0.6)
    blue[1].kill(signal.SIGKILL)
    t0 = time.monotonic()
    r.wait_status(lambda s: s["clusters"]["blue"]["nodes"][1]["state"] == "unhealthy", timeout=3)
    assert time.monotonic() - t0 <= 1.0
    # and the node comes back after `rise` good checks
    blue[1].start()
    r.wait_status(lambda s: s["clusters"]["blue"]["nodes"][1]["state"] == "healthy", timeout=3)


def test_upstream_timeout_504_and_ejection(backends, router_factory):
    blue = backends("blue", 2)
    green = backends("green", 1)
    cfg = toml_config({"blue": blue, "green": green}, access_log=False,
                      timeouts={"upstream": 0.5}, outlier_detection={"base_ejection_time": 30.0})
    r = router_factory(config=cfg)
    t0 = time.monotonic()
    code, h, _ = r.get("/slow?ms=3000")
    assert code == 504 and time.monotonic() - t0 < 1.5
    st = r.status()
    assert sorted(n["state"] for n in st["clusters"]["blue"]["nodes"]) == ["ejected", "healthy"]
    assert r.get("/fast")[0] == 200
