"""HDR latency recording (loadtests/latency.py): wrk2's coordinated-omission correction and exact merging across workers."""
from __future__ import annotations

import json
import random

import pytest

from loadtests import latency, thresholds


def open_model_with_a_stall(rate: float = 100, seconds: float = 10, service: float = 0.002,
                            stall_at: float = 5.0, stall: float = 1.0) -> latency.Recorder:
    """One connection sending on a fixed schedule (every 1/rate s); the server answers in `service`
    seconds except one request at `stall_at` that takes `stall`. A request cannot be sent before
    the previous answer (one connection), so during the stall the schedule falls behind."""
    recorder = latency.Recorder()
    free_at = 0.0
    stalled = False
    for i in range(int(rate * seconds)):
        intended = i / rate
        sent = max(intended, free_at)
        took = stall if (not stalled and intended >= stall_at) else service
        stalled = stalled or took == stall
        free_at = sent + took
        recorder.record("session", "blue", sent, free_at, intended=intended)
    return recorder


def test_corrected_p99_shows_a_stall_that_raw_p99_hides() -> None:
    figures = open_model_with_a_stall().summary()["total"]
    assert figures["count"] == 1000
    assert figures["p99"] == pytest.approx(2.0, abs=0.01)          # raw: 1 request in 1,000 was slow
    assert figures["max"] == pytest.approx(1000.0, rel=0.001)
    corrected = figures["corrected"]
    # ~100 requests were due during the 1 s stall; each waited from its intended time.
    assert 850 <= corrected["p99"] <= 1000 and corrected["p95"] >= 400
    assert corrected["p50"] == pytest.approx(2.0, abs=0.01)           # most of the run was unaffected
    [verdict], code = thresholds.gate([thresholds.parse("p99<100")], open_model_with_a_stall().summary())
    assert not verdict.held and code == 1                              # the gate judges the corrected figure


def test_without_a_schedule_nothing_is_corrected() -> None:
    recorder = latency.Recorder()
    for i in range(200):
        recorder.record("login", "green", sent=i, done=i + 0.050 + (i % 10) / 1000)
    figures = recorder.summary()["endpoints"]["login"]
    assert "corrected" not in figures and figures["count"] == 200
    assert 50 <= figures["p50"] <= 60 and figures["p99"] <= 60
    assert recorder.summary()["worst_send_lag_ms"] == 0


def test_send_lag_is_the_longest_wait_behind_schedule() -> None:
    summary = open_model_with_a_stall().summary()
    assert summary["worst_send_lag_ms"] == pytest.approx(1000 - 10, abs=1)


def test_per_cluster_and_per_request_name_counts_and_errors() -> None:
    recorder = latency.Recorder()
    for i in range(300):
        cluster = "green" if i % 3 == 0 else "blue"
        recorder.record("userinfo" if i % 2 else "session", cluster, sent=i, done=i + 0.01, failed=i % 50 == 0)
    recorder.record("login", None, sent=1, done=1.2, failed=True)  # no X-Served-By: a refused connection
    summary = recorder.summary()
    assert summary["total"]["count"] == 301 and summary["total"]["errors"] == 7
    assert {k: v["count"] for k, v in summary["clusters"].items()} == {"blue": 200, "green": 100}
    assert sum(v["errors"] for v in summary["clusters"].values()) == 6
    assert {k: v["count"] for k, v in summary["endpoints"].items()} == {"login": 1, "session": 150, "userinfo": 150}


def test_merged_workers_equal_one_recorder_that_saw_everything() -> None:
    rng = random.Random(7)
    workers = [latency.Recorder() for _ in range(3)]
    everything = latency.Recorder()
    for i in range(6000):
        name, cluster = rng.choice(["session", "login", "userinfo"]), rng.choice(["blue", "green"])
        sent = i * 0.001
        done = sent + rng.lognormvariate(-4, 1)
        intended = sent - rng.random() * 0.01
        failed = rng.random() < 0.01
        for recorder in (workers[i % 3], everything):
            recorder.record(name, cluster, sent, done, intended=intended, failed=failed)
    shipped = [json.loads(json.dumps(worker.encode())) for worker in workers]  # as Locust's messages carry them
    merged = latency.merged(shipped).summary()
    assert merged == everything.summary()
    assert merged["total"]["count"] == sum(w.summary()["total"]["count"] for w in workers) == 6000
    for cluster in ("blue", "green"):
        assert merged["clusters"][cluster]["count"] == sum(w.summary()["clusters"][cluster]["count"] for w in workers)


def test_empty_groups_have_no_percentiles() -> None:
    figures = latency.Series().figures()
    assert figures == {"count": 0, "errors": 0, "p50": None, "p95": None, "p99": None, "p999": None}
