"""summary.json of a load run: figures per cluster, request name and step, Locust's own next to ours, the SLO verdicts and the exit code."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from loadtests import scenarios
from loadtests import slo as slo_module
from loadtests.config import RunConfig

LOCUST_PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99, "p999": 0.999}
UNATTRIBUTED = "unattributed"   # responses without X-Served-By: connection errors, the router's own answers


def ratio(canary: dict[str, Any], stable: dict[str, Any], name: str) -> float | None:
    """The canary's percentile over the stable cluster's (corrected where measured), None without both."""
    def pick(fig: dict[str, Any]) -> float | None:
        return (fig.get("corrected") or fig).get(name) if fig.get("count") else None
    a, b = pick(canary), pick(stable)
    return None if a is None or not b else round(a / b, 3)


def _ratios(clusters: dict[str, Any], roles: dict[str, str] | None) -> dict[str, Any] | None:
    if not roles:
        return None
    empty: dict[str, Any] = {"count": 0}
    canary, stable = clusters.get(roles["canary"], empty), clusters.get(roles["stable"], empty)
    return {"canary": roles["canary"], "stable": roles["stable"],
            "p95": ratio(canary, stable, "p95"), "p99": ratio(canary, stable, "p99")}


def _locust_figures(stats: Any) -> dict[str, Any]:
    """Locust's own percentiles (bucketed: 1 ms under 100 ms, 10 ms to 1 s, 100 ms above) per request name."""
    def one(entry: Any) -> dict[str, Any]:
        figures = {"count": entry.num_requests, "errors": entry.num_failures}
        if entry.num_requests:
            figures.update({k: entry.get_response_time_percentile(p) for k, p in LOCUST_PERCENTILES.items()})
        return figures
    return {"total": one(stats.total), "endpoints": {name: one(entry) for (name, _method), entry in
                                                     sorted(stats.entries.items())}}


def _steps(collector: Any, run: RunConfig, roles: dict[str, str] | None, elapsed: float) -> list[dict[str, Any]]:
    """The scenario's steps that began before the run ended (a capacity search stops early), each to its end."""
    steps = []
    for step in run.scenario.steps:
        if step.start >= elapsed:
            break
        figures = collector.timeline.window(collector.started_wall + step.start, collector.started_wall + step.end)
        entry = {"name": step.name, "start": round(step.start, 3), "end": round(min(step.end, elapsed), 3),
                 "share": step.share, "rate": step.rate, "total": figures["total"], "clusters": figures["clusters"],
                 "endpoints": figures["endpoints"], "unattributed": figures.get(UNATTRIBUTED),
                 "requests": figures["requests"],
                 "ratios": _ratios(figures["clusters"], roles)}
        steps.append(entry)
    return steps


def _warnings(collector: Any) -> list[str]:
    runner = collector.environment.runner
    warnings = []
    if getattr(runner, "cpu_warning_emitted", False) or getattr(runner, "worker_cpu_warning_emitted", False):
        warnings.append("Locust's CPU warning: a generator process went over 90 % CPU; its latencies include its "
                        "own delays and are not to be trusted (use --processes, or fewer users)")
    if collector.loop_lag_count >= 3:
        warnings.append(f"the generator's event loop was late {collector.loop_lag_count} times by more than 50 ms "
                        f"(worst {collector.loop_lag_max * 1000:.0f} ms): it was CPU-bound, and its figures are not "
                        "to be trusted")
    return warnings


def build(collector: Any, run: RunConfig, options: Any, elapsed: float) -> dict[str, Any]:
    figures = collector.recorder.summary()
    clusters = figures["clusters"]
    roles = collector.roles
    result: dict[str, Any] = {
        "scenario": run.scenario.name, "host": options.host,
        "started_at": datetime.datetime.fromtimestamp(collector.started_wall, datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(elapsed, 3), "planned_duration_s": run.scenario.duration,
        "users": run.users, "rate": run.scenario.rate, "processes": max(1, int(getattr(options, "processes", 0) or 1)),
        "model": "open" if run.scenario.rate else "closed",
        "total": figures["total"], "clusters": clusters, "endpoints": figures["endpoints"],
        "worst_send_lag_ms": figures["worst_send_lag_ms"], "roles": roles, "nodes": collector.nodes,
        "ratios": _ratios(clusters, roles),
        "steps": _steps(collector, run, roles, elapsed),
        "workers": collector.worker_counts,
        "timeline": collector.timeline.rows(collector.started_wall, corrected=bool(run.scenario.rate)),
        "events": collector.events,
        "locust": _locust_figures(collector.environment.runner.stats),
        "generator": {"warnings": _warnings(collector), "cpu_percent_max": round(collector.cpu_max, 1),
                      "loop_lag_max_ms": round(collector.loop_lag_max * 1000, 1)},
    }
    if UNATTRIBUTED in figures:
        result[UNATTRIBUTED] = figures[UNATTRIBUTED]
    if isinstance(run.scenario, scenarios.Capacity):
        result["capacity"] = scenarios.capacity_result(result["steps"], run.scenario.broken_at, collector.nodes,
                                                       float(run.scenario.rate or 0.0))
        result["capacity"]["verdicts"] = collector.capacity_lines
    verdicts, code = slo_module.gate(slo_module.parse_all(options.lt_slo), result)
    result["slo"] = [{"text": v.slo.text, "ok": v.held, "line": v.line} for v in verdicts]
    result["exit_code"] = code
    return result


def write(result: dict[str, Any], out: Path) -> Path:
    path = out / "summary.json"
    path.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return path
