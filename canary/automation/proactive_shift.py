"""Proactive shift: traffic moved away from a cluster that is degraded though not dead, in bounded steps, and back.

Failover (routing.py) acts when a cluster has no healthy node. A cluster can be alive and still hurt its
users: errors well above the other cluster's, or a p99 several times the other's. Each look compares both
clusters over the last `window` seconds of their records (records.py); `sustain` degraded looks in a row
move `step_percent` more of that cluster's users (new and pinned: the move is by pin bucket) to the other
cluster, never beyond `max_percent` (more needs a human, and the rest keeps the evidence of recovery
coming). The way back needs `recover_sustain` recovered looks in a row, judged against half the thresholds
(hysteresis), and goes one step at a time, so a cluster near the threshold does not flap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from canary.automation.analysis import summary
from canary.config.settings import ProactiveShiftConfig
from canary.dataplane.records import Window


@dataclass(slots=True)
class Move:
    cluster: str
    percent: float          # the cluster's shifted share after the move
    before: float
    reason: str
    figures: dict[str, Any]

    @property
    def away(self) -> bool:
        return self.percent > self.before


@dataclass
class ProactiveShift:
    """Counts consecutive looks per cluster; `look()` returns the moves to make (at most one per look)."""
    cfg: ProactiveShiftConfig
    degraded_looks: dict[str, int] = field(default_factory=dict)
    recovered_looks: dict[str, int] = field(default_factory=dict)

    def compare(self, mine: Window, other: Window) -> tuple[str, str]:
        """("degraded" | "recovered" | "unknown", why) for one cluster against the other."""
        cfg = self.cfg
        if mine.total < cfg.min_samples or other.total < cfg.min_samples:
            return "unknown", f"too few answers ({mine.total} and {other.total}, at least {cfg.min_samples})"
        mine_s, other_s = summary(mine), summary(other)
        error_gap = other.success_percent - mine.success_percent
        p99, other_p99 = mine_s["p99_ms"] / 1000, other_s["p99_ms"] / 1000
        slow = p99 >= cfg.latency_ratio * other_p99 and p99 - other_p99 >= cfg.min_latency_gap
        why = (f"errors {100 - mine.success_percent:.1f} % vs {100 - other.success_percent:.1f} %, "
               f"p99 {p99 * 1000:.0f} ms vs {other_p99 * 1000:.0f} ms")
        if error_gap >= cfg.error_margin_percent or slow:
            return "degraded", why
        half_ratio = 1 + (cfg.latency_ratio - 1) / 2
        calm_latency = p99 < half_ratio * other_p99 or p99 - other_p99 < cfg.min_latency_gap / 2
        if error_gap < cfg.error_margin_percent / 2 and calm_latency:
            return "recovered", why
        return "unknown", why

    def look(self, windows: dict[str, Window], shift: dict[str, float]) -> list[Move]:
        cfg = self.cfg
        if not cfg.enabled or len(windows) != 2:
            return []
        (a, wa), (b, wb) = windows.items()
        moves: list[Move] = []
        for name, mine, other, other_name in ((a, wa, wb, b), (b, wb, wa, a)):
            verdict, why = self.compare(mine, other)
            self.degraded_looks[name] = self.degraded_looks.get(name, 0) + 1 if verdict == "degraded" else 0
            self.recovered_looks[name] = self.recovered_looks.get(name, 0) + 1 if verdict == "recovered" else 0
            now_pct = shift.get(name, 0.0)
            figures = {name: summary(mine), other_name: summary(other)}
            if self.degraded_looks[name] >= cfg.sustain and now_pct < cfg.max_percent \
                    and shift.get(other_name, 0.0) == 0:
                new = min(cfg.max_percent, now_pct + cfg.step_percent)
                moves.append(Move(name, new, now_pct, f"{name} degraded for {self.degraded_looks[name]} looks ({why}): "
                                  f"{new:g} % of its users moved to {other_name}", figures))
                self.degraded_looks[name] = 0
            elif self.recovered_looks[name] >= cfg.recover_sustain and now_pct > 0:
                new = max(0.0, now_pct - cfg.step_percent)
                moves.append(Move(name, new, now_pct, f"{name} recovered for {self.recovered_looks[name]} looks ({why}): "
                                  f"{new:g} % of its users stay on {other_name}", figures))
                self.recovered_looks[name] = 0
        return moves[:1]
