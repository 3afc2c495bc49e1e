"""Unit tests of the pure parts: pin signing, monotone share and slow start, config validation, budgets."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canary.config import ConfigError, from_dict
from canary.limits import ConcurrencyLimit
from canary.pin import BUCKETS, PinSigner
from canary.retry_budget import RetryBudget
from canary.share import SlowStart, canary_threshold, pick_side


def test_pin_roundtrip_and_tamper():
    p = PinSigner("k1", ttl=100)
    bucket, line = p.issue(now=1000)
    value = line.split(b"=", 1)[1].split(b";", 1)[0]
    assert p.check(value, 1000)[0] == bucket
    assert p.check(value, 1101)[0] == -1                    # expired
    assert PinSigner("k2", ttl=100).check(value, 1000)[0] == -1   # other secret
    b, t, sig = value.split(b".")
    assert p.check(b"%d.%s.%s" % ((int(b) + 1) % BUCKETS, t, sig), 1000)[0] == -1
    bucket2, rest, stale = p.extract(b"x=1; canary_pin=" + value + b"; y=2", 1000)
    assert bucket2 == bucket and rest == b"x=1; y=2"
    assert p.extract(b"canary_pin=" + value, 1000) == (bucket, None, False)


def test_pin_past_half_its_life_is_reissued_with_the_same_bucket():
    p = PinSigner("k1", ttl=100)
    bucket, line = p.issue(now=1000)
    value = line.split(b"=", 1)[1].split(b";", 1)[0]
    assert p.check(value, 1040) == (bucket, False)
    assert p.check(value, 1060) == (bucket, True)   # still valid, but due for a refresh
    again, fresh = p.issue(1060, bucket)
    assert again == bucket and fresh.startswith(b"Set-Cookie: canary_pin=%d.1060." % bucket)


@given(st.binary(min_size=1, max_size=100), st.binary(max_size=40))
def test_pin_signature_is_standard_hmac_sha256(key, payload):
    import base64
    import hashlib
    import hmac
    expected = base64.urlsafe_b64encode(hmac.digest(key, payload, hashlib.sha256))[:43]
    assert PinSigner(key)._sig(payload) == expected


@given(st.binary(max_size=80))
def test_pin_garbage_never_raises(value):
    assert PinSigner("k").check(value, 1000) == (-1, False)   # refused, never raises, never a bucket


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


BASE = {"clusters": [{"name": "a", "nodes": ["127.0.0.1:1"]}, {"name": "b", "nodes": ["127.0.0.1:2"]}]}


@pytest.mark.parametrize("patch, key", [
    ({"health_check": {"fall": 0}}, "health_check.fall"),
    ({"health_check": {"interval": "fast"}}, "health_check.interval"),
    ({"outlier_detection": {"max_ejection_percent": 150}}, "outlier_detection.max_ejection_percent"),
    ({"balancing": "random"}, "balancing"),
    ({"nonsense": 1}, "nonsense"),
    ({"listen": "nope"}, "listen"),
    ({"redis": "http://x"}, "redis"),
    ({"pin": {"cookie_name": "a b"}}, "pin.cookie_name"),
    ({"clusters": [{"name": "a", "nodes": []}, {"name": "b", "nodes": ["127.0.0.1:2"]}]}, "clusters[0].nodes"),
    ({"clusters": [{"name": "a", "nodes": ["x:1"]}, {"name": "a", "nodes": ["127.0.0.1:2"]}]}, "duplicate"),
])
def test_config_errors_name_the_key(patch, key):
    with pytest.raises(ConfigError) as e:
        from_dict({**BASE, **patch})
    assert key in str(e.value)


def test_config_defaults():
    cfg = from_dict(BASE)
    hc = cfg.health_check
    assert hc.interval * hc.fall + hc.timeout <= 1.0      # a dead node is detected within 1 s
    assert cfg.outlier_detection.consecutive_5xx == 5 and cfg.trusted_hops == 0
    assert cfg.share.slow_start_window == 30.0


def test_retry_budget_and_limits():
    b = RetryBudget(20, 3)
    b.active = 10
    assert [b.try_acquire() for _ in range(4)] == [True, True, True, False]
    b.active = 100
    assert b.try_acquire()

    class Item:
        queued = True
        queue_deadline = 5.0
    lim = ConcurrencyLimit(1, 1)
    a, q, r = Item(), Item(), Item()
    assert (lim.admit(a), lim.admit(q), lim.admit(r)) == (1, 0, -1)
    assert lim.release() is q and lim.active == 1
    assert lim.release() is None and lim.active == 0


def _make_secret(path: str, q) -> None:
    import os
    os.environ.pop("CANARY_TEST_SECRET", None)
    os.environ["CANARY_TEST_SECRET_FILE"] = path
    from canary.secret import load_or_create_secret
    q.put(load_or_create_secret("CANARY_TEST_SECRET", "CANARY_TEST_SECRET_FILE", path))


def test_secret_file_race_gives_every_instance_the_same_secret(tmp_path):
    import multiprocessing
    import os
    import stat
    ctx = multiprocessing.get_context("fork")
    for round_ in range(3):
        path = str(tmp_path / f"s{round_}" / "secret")
        q = ctx.Queue()
        procs = [ctx.Process(target=_make_secret, args=(path, q)) for _ in range(8)]
        for p in procs:
            p.start()
        values = {q.get(timeout=10) for _ in procs}
        for p in procs:
            p.join(10)
        assert len(values) == 1 and all(values)
        assert open(path).read().strip() == values.pop()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert os.listdir(os.path.dirname(path)) == ["secret"]     # no temp files left behind


def test_both_clusters_healing_together_shift_nobody():
    """At start-up (or after a shared outage) both sides slow-start at once: the split stays the configured one."""
    from canary.cluster import Cluster
    from canary.config import ClusterConfig, NodeConfig
    from canary.routing import Routing

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
