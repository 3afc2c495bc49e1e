"""summary.json of a load run: figures per cluster, request name and step, Locust's own next to ours, the SLO verdicts and the exit code."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from loadtests import node_metrics, report, scenarios, thresholds
from loadtests.latency import UNATTRIBUTED
from loadtests.run_settings import RunSettings

LOCUST_PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99, "p999": 0.999}


def _ratios(summary: dict[str, Any], clusters: dict[str, Any]) -> dict[str, Any] | None:
    """The seeds' table row of one window, as report.py computes it for the terminal and report.html."""
    canary, stable, _note = report.roles_of(summary)
    if canary is None or stable is None:
        return None
    row = report.ratio_row("", "", clusters, canary, stable)
    return {"canary": canary, "stable": stable, **row.ratios, "reason": row.reason}


def _locust_figures(stats: Any) -> dict[str, Any]:
    """Locust's own percentiles (bucketed: 1 ms under 100 ms, 10 ms to 1 s, 100 ms above) per request name."""
    def one(entry: Any) -> dict[str, Any]:
        figures = {"count": entry.num_requests, "errors": entry.num_failures}
        if entry.num_requests:
            figures.update({k: entry.get_response_time_percentile(p) for k, p in LOCUST_PERCENTILES.items()})
        return figures
    return {"total": one(stats.total), "endpoints": {name: one(entry) for (name, _method), entry in
                                                     sorted(stats.entries.items())}}


def _steps(collector: Any, run: RunSettings, elapsed: float) -> list[dict[str, Any]]:
    """The scenario's steps that began before the run ended (a capacity search stops early), each to its end."""
    steps = []
    for step in run.scenario.steps:
        if step.start >= elapsed:
            break
        figures = collector.timeline.window(collector.started_wall + step.start, collector.started_wall + step.end)
        entry = {"name": step.name, "start": round(step.start, 3), "end": round(min(step.end, elapsed), 3),
                 "share": step.share, "rate": step.rate, "total": figures["total"], "clusters": figures["clusters"],
                 "endpoints": figures["endpoints"], "unattributed": figures.get(UNATTRIBUTED),
                 "requests": figures["requests"]}
        steps.append(entry)
    return steps


def build(collector: Any, run: RunSettings, options: Any, elapsed: float) -> dict[str, Any]:
    figures = collector.recorder.summary()
    clusters = figures["clusters"]
    result: dict[str, Any] = {
        "scenario": run.scenario.name, "host": options.host,
        "started_at": datetime.datetime.fromtimestamp(collector.started_wall, datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(elapsed, 3), "planned_duration_s": run.scenario.duration,
        "users": run.scenario.users, "rate": run.scenario.rate, "processes": run.processes,
        "model": "open" if run.scenario.rate else "closed",
        "total": figures["total"], "clusters": clusters, "endpoints": figures["endpoints"],
        "worst_send_lag_ms": figures["worst_send_lag_ms"], "roles": collector.roles, "nodes": collector.nodes,
        "steps": _steps(collector, run, elapsed),
        "workers": collector.worker_counts,
        "timeline": collector.timeline.rows(collector.started_wall, corrected=bool(run.scenario.rate)),
        "events": collector.events,
        "locust": _locust_figures(collector.environment.runner.stats),
        "generator": {"warnings": collector.warnings(), "cpu_percent_max": round(collector.cpu_max, 1),
                      "loop_lag_max_ms": round(collector.loop_lag_max * 1000, 1)},
    }
    if UNATTRIBUTED in figures:
        result[UNATTRIBUTED] = figures[UNATTRIBUTED]
    if run.recovery_per_minute > 0:
        result["mail"] = collector.mail.summary(run.recovery_per_minute, run.mail_grace)
    if run.imap_per_second > 0:
        result["imap"] = node_metrics.imap_summary(run, collector.backend_figures)
    result["ratios"] = _ratios(result, clusters)
    for step in result["steps"]:
        step["ratios"] = _ratios(result, step["clusters"])
    if isinstance(run.scenario, scenarios.Capacity):
        result["capacity"] = scenarios.capacity_result(result["steps"], run.scenario.broken_at, collector.nodes,
                                                       float(run.scenario.rate or 0.0))
        result["capacity"]["verdicts"] = collector.capacity_lines
    verdicts, code = thresholds.gate(thresholds.parse_all(options.lt_slo), result)
    result["slo"] = [{"text": v.slo.text, "ok": v.held, "line": v.line} for v in verdicts]
    result["exit_code"] = code
    return result


def write(result: dict[str, Any], out: Path) -> Path:
    path = out / "summary.json"
    path.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return path
