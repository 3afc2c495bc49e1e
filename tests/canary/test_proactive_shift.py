"""Proactive shift on real gunicorn nodes of the login service: a node slowed by the test-only delay setting
(LOGINSVC_TEST_DELAY) loses its users to the other cluster in capped steps, with an alert at each move, and gets
them back step by step once it is restarted without the delay, with no move in between (no flapping)."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import requests

from .test_login_cluster import login_cluster_config

SHIFT = ("[proactive_shift]\nwindow = 2.0\ninterval = 0.5\nsustain = 2\nrecover_sustain = 4\nstep_percent = 25.0\n"
         "max_percent = 50.0\nmin_samples = 10\nlatency_ratio = 3.0\nmin_latency_gap = 0.08\n")
DELAY_MS = 200


def moves(var: Path) -> list[tuple[str, float]]:
    path = var / "alerts" / "journal.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [(e["kind"], e["figures"]["percent"]) for e in events if e["kind"] in ("shift_away", "shift_back")]


def test_a_slowed_cluster_loses_users_in_capped_steps_and_gets_them_back(stack: Any, router_factory: Any,
                                                                         tmp_path: Path) -> None:
    blue = stack("blue-1", cluster="blue", LOGINSVC_TRUSTED_PROXY_HOPS="1")
    green = stack("green-1", cluster="green", LOGINSVC_TRUSTED_PROXY_HOPS="1",
                  LOGINSVC_TEST_DELAY=f"green-1={DELAY_MS}", WEB_CONCURRENCY="2")
    var = tmp_path / "router-var"
    router = router_factory(config=login_cluster_config(blue, green) + SHIFT, env={"LOGINSVC_VAR_DIR": str(var)})
    served: list[tuple[float, str]] = []
    stop = threading.Event()

    def browse() -> None:       # new browsers (no pin cookie) asking for their session, as a product's page does
        while not stop.is_set():
            try:
                reply = requests.get(f"http://127.0.0.1:{router.port}/api/session", timeout=5)
                served.append((time.monotonic(), reply.headers.get("X-Served-By", "?").split("/")[0]))
            except requests.RequestException:
                served.append((time.monotonic(), "error"))
            time.sleep(0.01)
    threads = [threading.Thread(target=browse, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        at_cap = router.wait_status(lambda s: s["shift"].get("green") == 50, timeout=40)
        assert at_cap["percent"] == 50 and at_cap["effective_canary_percent"] == 25
        assert moves(var) == [("shift_away", 25), ("shift_away", 50)]
        time.sleep(3)                                    # the cap holds although green is still slow
        assert router.status()["shift"] == {"green": 50.0} and len(moves(var)) == 2
        since = time.monotonic()
        time.sleep(2)
        recent = [c for t, c in served if t >= since]
        assert "error" not in recent and 0.1 < recent.count("green") / len(recent) < 0.45, recent.count("green")

        green.stop()                                     # the operator fixes green: no delay any more
        green.env.pop("LOGINSVC_TEST_DELAY")
        green.start()
        back = router.wait_status(lambda s: s["shift"] == {}, timeout=60)
        assert back["effective_canary_percent"] == 50
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    # Capped steps of 25 both ways, never past the cap of 50, and every user back at the end: usually exactly
    # away 25, away 50, back 25, back 0. On a loaded machine (two test workers on two cores) the restarted
    # green can be judged slow again while it warms up, and moves between 25 and 50 a few times first.
    steps = moves(var)
    assert steps[:3] == [("shift_away", 25), ("shift_away", 50), ("shift_back", 25)] and steps[-1] == ("shift_back", 0)
    assert all(abs(b - a) == 25 for (_, a), (_, b) in zip(steps, steps[1:])) and max(p for _, p in steps) == 50
    journal = [json.loads(line) for line in (var / "alerts" / "journal.jsonl").read_text().splitlines()]
    first = next(e for e in journal if e["kind"] == "shift_away")
    assert first["cluster"] == "green" and first["figures"]["green"]["p99_ms"] >= DELAY_MS, first
    assert "green degraded" in first["text"] and "moved to blue" in first["text"]
