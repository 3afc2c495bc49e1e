"""deploy/monitoring as ops run it: promtool accepts the scrape configuration and the alerting rules and their unit
tests pass (Debian's `prometheus` package; skipped with the reason without it, failed under CI), and every metric
name an alert rule or the Grafana dashboard uses is one a live router or a live login node exports."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from deploy.stack import NodeSpec, StackSpec
from tests.canary.conftest import ROOT, toml_config
from tests.support import require

MONITORING = ROOT / "deploy" / "monitoring"
PROMTOOL = shutil.which("promtool")
OURS = re.compile(r"\b(?:canary|loginsvc)_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",), "summary": ("", "_count", "_sum", "_created"), "untyped": ("",)}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require(PROMTOOL is not None, "promtool comes with Debian's prometheus package (.ci/run installs it)")
    return subprocess.run([PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [("check", "rules", "alert-rules.yml"), ("test", "rules", "alert-rules.test.yml"),
                                  ("check", "config", "--syntax-only", "prometheus.yml")])
def test_promtool_accepts_the_monitoring_files(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def exported(text: str) -> set[str]:
    """Every sample name an exposition can carry: the TYPE lines' families with their suffixes, and the samples."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            base = family.removesuffix("_total") if kind == "counter" else family
            names |= {base + suffix for suffix in SUFFIXES.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def used() -> dict[str, set[str]]:
    """Metric names in every rule expression and every dashboard query, by where they are used."""
    out: dict[str, set[str]] = {}
    rules = yaml.safe_load((MONITORING / "alert-rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            out[f"rule {rule['alert']}"] = set(OURS.findall(rule["expr"]))
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        out[f"panel {panel['title']!r}"] = {n for t in panel["targets"] for n in OURS.findall(t["expr"])}
    return out


def test_every_metric_the_rules_and_the_dashboard_use_is_exported(backends: Any, router_factory: Any,
                                                                  stack: Any) -> None:
    blue, green = backends("blue", 1), backends("green", 1)
    router = router_factory(config=toml_config({"blue": blue, "green": green}))
    for _ in range(5):
        router.get("/")
    node = stack("blue-1", cluster="blue")
    requests.get(f"http://127.0.0.1:{node.port}/api/session", timeout=10)
    session = requests.Session()
    session.get(f"http://127.0.0.1:{node.port}/login/", timeout=10)
    session.post(f"http://127.0.0.1:{node.port}/login/", timeout=10, headers={"Referer": f"http://127.0.0.1:{node.port}/login/"},
                 data={"username": "nobody@example.test", "password": "wrong",
                       "csrfmiddlewaretoken": session.cookies.get("csrftoken", "")})
    with urllib.request.urlopen(router.admin_url + "/metrics", timeout=5) as r:
        names = exported(r.read().decode())
    names |= exported(requests.get(f"http://127.0.0.1:{node.port}/metrics", timeout=10).text)
    assert {"canary_requests_total", "loginsvc_logins_total", "loginsvc_request_duration_seconds_count"} <= names
    wanted = used()
    assert sum(map(len, wanted.values())) > 25     # the check looked at real expressions
    missing = {where: sorted(n - names) for where, n in wanted.items() if n - names}
    assert not missing, missing


def test_the_stack_writes_its_nodes_for_prometheus(tmp_path: Path) -> None:
    spec = StackSpec(var_dir=str(tmp_path), nodes=[NodeSpec("blue", "blue-1", 8010), NodeSpec("green", "green-1", 8012)])
    spec.save()
    targets = json.loads((tmp_path / "stack" / "prometheus-targets.json").read_text())
    assert targets == [{"targets": ["127.0.0.1:8010"], "labels": {"cluster": "blue", "node": "blue-1"}},
                       {"targets": ["127.0.0.1:8012"], "labels": {"cluster": "green", "node": "green-1"}}]
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    files = [f for job in config["scrape_configs"] for sd in job.get("file_sd_configs", []) for f in sd["files"]]
    assert [(MONITORING / f).resolve() for f in files] == [(ROOT / "var" / "stack" / "prometheus-targets.json").resolve()]
