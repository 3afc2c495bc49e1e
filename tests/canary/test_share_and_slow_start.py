"""The share maps buckets to clusters monotonically; slow start after a heal moves each user once."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canary.dataplane.pin import BUCKETS
from canary.dataplane.share import SlowStart, canary_threshold, pick_side


@given(st.integers(0, BUCKETS - 1), st.floats(0, 100), st.floats(0, 100))
def test_ramp_monotone(bucket, a, b):
    lo, hi = sorted((a, b))
    if bucket < canary_threshold(lo):
        assert bucket < canary_threshold(hi)      # a canary user at the lower share stays canary when raised



@given(st.integers(0, BUCKETS - 1), st.floats(0, 100), st.floats(0.1, 1), st.floats(0.1, 1), st.floats(0, 0.5))
def test_slow_start_moves_users_once(bucket, pct, f1, f2, df):
    """As the recovering side's factor grows, a bucket only ever moves towards its home side."""
    t = canary_threshold(pct)
    home_canary = bucket < t
    for fc, fs in ((f1, 1.0), (1.0, f2)):
        before = pick_side(bucket, t, fc, fs)
        after = pick_side(bucket, t, min(1.0, fc + df) if fc < 1 else 1.0, min(1.0, fs + df) if fs < 1 else 1.0)
        if before == home_canary:
            assert after == home_canary
    assert pick_side(bucket, t, 1.0, 1.0) == home_canary



def test_slow_start_factor_linear():
    s = SlowStart(window=10, min_percent=10)
    s.start(100.0)
    assert s.factor(100.0) == pytest.approx(0.1)
    assert s.factor(105.0) == pytest.approx(0.55)
    assert s.factor(111.0) == 1.0 and s.since is None



def test_both_clusters_healing_together_shift_nobody():
    """At start-up (or after a shared outage) both sides slow-start at once: the split stays the configured one."""
    from canary.dataplane.cluster import Cluster
    from canary.config.settings import ClusterConfig, NodeConfig
    from canary.dataplane.routing import Routing

    clusters = [Cluster(ClusterConfig(name=n, nodes=[NodeConfig(name=f"{n}-1", host="127.0.0.1", port=p)]),
                        "least_request") for n, p in (("blue", 1), ("green", 2))]
    routing = Routing(clusters, slow_start_window=30.0, slow_start_min_percent=10.0)
    routing.set_percent(12)
    for c in clusters:
        routing.slow[c.name].start(0.0)
    for now in (0.0, 3.0, 15.0):
        assert routing.effective_percent(now) == pytest.approx(12.0)
        to_canary = sum(routing.choose(b, now, count=False) is clusters[1] for b in range(BUCKETS))
        assert to_canary == canary_threshold(12)
    # Only the side further behind is held back: green healing later takes less than its share.
    routing.slow["green"].start(10.0)
    assert routing.effective_percent(12.0) < 12.0
