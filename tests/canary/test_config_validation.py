"""Configuration: every bad value is refused with a message naming its key; the defaults are the documented ones."""
from __future__ import annotations

import pytest

from canary.config import ConfigError, from_dict


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
