"""Configuration: every bad value is refused with a message naming its key; the defaults are the documented ones."""
from __future__ import annotations

import pytest

from canary.config.loading import from_dict
from canary.config.settings import ConfigError


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
    assert hc.interval * hc.unhealthy_threshold + hc.timeout <= 1.0      # a dead node is detected within 1 s
    assert cfg.outlier_detection.consecutive_5xx == 5 and cfg.trusted_hops == 0
    assert cfg.share.slow_start_window == 30.0


def documented_reference() -> dict:
    """The TOML block of docs/router.md's "Configuration reference", parsed."""
    import re
    import tomllib
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "docs" / "router.md").read_text()
    block = re.search(r"## Configuration reference.*?```toml\n(.*?)```", text, re.S)
    assert block is not None
    doc = tomllib.loads(block.group(1))
    # a list in TOML is a tuple in the dataclass (immutable defaults)
    return {k: {kk: tuple(vv) if isinstance(vv, list) else vv for kk, vv in v.items()} if isinstance(v, dict) else v
            for k, v in doc.items()}


# Keys whose example in the reference is not their default: values TOML cannot spell as one (None, a tuple)
UNSET_IN_THE_EXAMPLE = ("clusters", "redis", "listen", "admin", "trusted_proxies", "public_origin")


def test_the_documented_reference_lists_every_key_with_its_default():
    """docs/router.md and canary/config/settings.py cannot drift apart: same sections, same keys, same defaults."""
    import dataclasses

    from canary.config.settings import _SECTIONS, Config
    doc = documented_reference()
    for name, cls in _SECTIONS.items():
        assert name in doc, name
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        assert doc[name] == defaults, name
    top = {f.name: f.default for f in dataclasses.fields(Config)
           if f.name not in _SECTIONS and f.name not in UNSET_IN_THE_EXAMPLE}
    assert {k: v for k, v in doc.items() if k in top} == top
    assert set(doc) - set(_SECTIONS) == set(top) | set(UNSET_IN_THE_EXAMPLE)


def test_every_rule_names_its_key_and_the_value():
    """For each key with a rule, a value breaking it is refused with one line naming the key."""
    import dataclasses

    from canary.config.settings import _SECTIONS
    bad = {"path": "readyz", "balancing": "random", "cookie_name": "a b"}
    for name, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.metadata.get("rule") is None:
                continue
            value = bad.get(f.name, -1000 if isinstance(f.default, int) else -1000.0)
            with pytest.raises(ConfigError) as e:
                from_dict({**BASE, name: {f.name: value}})
            assert str(e.value).startswith(f"{name}.{f.name}") and repr(value) in str(e.value), str(e.value)


def test_a_renamed_key_is_still_accepted_with_a_deprecation_line(caplog):
    cfg = from_dict({**BASE, "health_check": {"fall": 4, "rise": 5}})
    assert (cfg.health_check.unhealthy_threshold, cfg.health_check.healthy_threshold) == (4, 5)
    assert "health_check.fall is deprecated: use health_check.unhealthy_threshold" in caplog.text
    with pytest.raises(ConfigError, match=r"^health_check.fall: give health_check.unhealthy_threshold only"):
        from_dict({**BASE, "health_check": {"fall": 4, "unhealthy_threshold": 4}})


def test_cluster_and_node_keys_follow_their_rules_and_documented_defaults():
    """Clusters and nodes have one source per field too: the rule refuses a bad value naming the key, and the
    reference's first cluster shows the defaults."""
    import dataclasses

    from canary.config.settings import ClusterConfig, NodeConfig
    bad = {"max_concurrent": 0, "max_queue": -1, "dns_refresh": 0.0, "weight": 0}
    for cls in (ClusterConfig, NodeConfig):
        for f in dataclasses.fields(cls):
            if f.metadata.get("rule") is None:
                continue
            assert f.name in bad, f"a bad value for {f.name} is missing here"
            cluster = {"name": "a", "nodes": ["127.0.0.1:1"]}
            if cls is NodeConfig:
                cluster["nodes"] = [{"address": "127.0.0.1:1", f.name: bad[f.name]}]
                key = f"clusters[0].nodes[0].{f.name}"
            elif f.name == "dns_refresh":
                cluster = {"name": "a", "dns": "localhost:1", f.name: bad[f.name]}
                key = f"clusters[0].{f.name}"
            else:
                cluster[f.name] = bad[f.name]
                key = f"clusters[0].{f.name}"
            with pytest.raises(ConfigError) as e:
                from_dict({**BASE, "clusters": [cluster, BASE["clusters"][1]]})
            assert str(e.value).startswith(f"{key}: must be ") and repr(bad[f.name]) in str(e.value), str(e.value)
    first = documented_reference()["clusters"][0]
    assert {k: first[k] for k in ("max_concurrent", "max_queue")} == {
        "max_concurrent": ClusterConfig.__dataclass_fields__["max_concurrent"].default,
        "max_queue": ClusterConfig.__dataclass_fields__["max_queue"].default}
