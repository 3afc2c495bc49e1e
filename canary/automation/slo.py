"""SLO watch: each cluster against its objective (success rate, p99) over a sliding window; a breach and its end are alerts.

The load suites gate a release on SLOs after the fact; this is the same objective watched live by
the router, from the per-request records the analysis uses, so the NOC hears of a breach while it
happens. Only changes are reported (breached -> ok -> breached), so a long breach is one alert.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from canary.automation.analysis import summary
from canary.config.settings import SloConfig
from canary.dataplane.records import Window


@dataclass(slots=True)
class Change:
    cluster: str
    breached: bool
    text: str
    figures: dict[str, Any]


@dataclass
class SloWatch:
    cfg: SloConfig
    breached: dict[str, bool] = field(default_factory=dict)

    def look(self, windows: dict[str, Window]) -> list[Change]:
        if not self.cfg.enabled:
            return []
        changes = []
        for name, w in windows.items():
            if w.total < self.cfg.min_samples:
                continue
            figures = summary(w)
            why = []
            if w.success_percent < self.cfg.success_percent:
                why.append(f"success {w.success_percent:.2f} % < {self.cfg.success_percent:g} %")
            if figures["p99_ms"] > self.cfg.p99_ms:
                why.append(f"p99 {figures['p99_ms']:.0f} ms > {self.cfg.p99_ms:g} ms")
            now_breached = bool(why)
            if now_breached != self.breached.get(name, False):
                self.breached[name] = now_breached
                text = (f"{name}: SLO breached over the last {self.cfg.window:g} s: {', '.join(why)}" if now_breached
                        else f"{name}: SLO met again (success {w.success_percent:.2f} %, p99 {figures['p99_ms']:.0f} ms)")
                changes.append(Change(name, now_breached, text, figures))
        return changes
