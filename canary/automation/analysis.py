"""Canary analysis: the canary's window against the stable cluster's over the same seconds -> pass, fail or inconclusive.

The gates, in order (defaults in config.AnalysisConfig, documented in docs/router.md):
1. Fewer than `min_samples` answers on either side: inconclusive (never a guess on little data).
2. Success rate below `min_success_percent` (Flagger's request-success-rate gate, 99 %): fail.
3. Latency, by Mann-Whitney U tests (as Kayenta judges a metric) of the canary's latencies against
   stable's times `latency_tolerance`, one-sided both ways, at level 1 - confidence:
   significantly larger -> fail; significantly smaller (within the tolerance, with evidence) -> pass;
   neither -> inconclusive: the data cannot tell yet, so the step is extended rather than guessed.
The figures behind the verdict (counts, success rates, p50/p95/p99 and their ratios, U, p-values) are kept
with it (plan history, alerts).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from canary.config.settings import AnalysisConfig
from canary.dataplane.records import Window, percentile


@dataclass(slots=True)
class Verdict:
    outcome: str            # "pass" | "fail" | "inconclusive"
    reason: str
    figures: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summary(w: Window) -> dict[str, Any]:
    lat = sorted(w.latencies)
    return {"answers": w.total, "failed": w.failed, "success_percent": round(w.success_percent, 3),
            "latency_samples": len(lat), **{f"p{q}_ms": round(percentile(lat, q) * 1000, 2) for q in (50, 95, 99)}}


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b > 0 else (1.0 if a == 0 else float("inf"))


def mann_whitney(canary: list[float], stable: list[float]) -> tuple[float, float, float]:
    """U statistic of `canary` and the one-sided p-values of "canary tends to be larger" and "... smaller":
    the normal approximation with tie and continuity correction, which is what
    scipy.stats.mannwhitneyu(method="asymptotic") computes (tests/canary/test_analysis.py checks it against
    scipy). Written here because importing scipy.stats takes ~2 s, on the router's event loop."""
    n1, n2 = len(canary), len(stable)
    n = n1 + n2
    values = canary + stable
    order = sorted(range(n), key=values.__getitem__)
    rank_sum = 0.0
    ties = 0.0
    i = 0
    while i < n:
        j = i + 1
        v = values[order[i]]
        while j < n and values[order[j]] == v:
            j += 1
        if j == i + 1:
            if order[i] < n1:
                rank_sum += j
        else:                                    # ranks i+1 .. j share their mean
            rank_sum += (i + j + 1) / 2.0 * sum(1 for k in order[i:j] if k < n1)
            t = j - i
            ties += t * t * t - t
        i = j
    u1 = rank_sum - n1 * (n1 + 1) / 2.0
    mu = n1 * n2 / 2.0
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))) if n > 1 else 0.0
    if sigma == 0:
        return u1, 1.0, 1.0
    p_greater = 0.5 * math.erfc((u1 - mu - 0.5) / sigma / math.sqrt(2.0))
    p_less = 0.5 * math.erfc((n1 * n2 - u1 - mu - 0.5) / sigma / math.sqrt(2.0))
    return u1, p_greater, p_less


def judge(canary: Window, stable: Window, cfg: AnalysisConfig) -> Verdict:
    """The verdict on one hold; both windows cover the same seconds."""
    c, s = summary(canary), summary(stable)
    figures: dict[str, Any] = {"canary": c, "stable": s}
    if min(len(canary.latencies), len(stable.latencies)) < cfg.min_samples:
        return Verdict("inconclusive", f"too few samples: canary {len(canary.latencies)}, stable "
                       f"{len(stable.latencies)} (at least {cfg.min_samples} each)", figures)
    if canary.success_percent < cfg.min_success_percent:
        return Verdict("fail", f"success rate {canary.success_percent:.2f} % below {cfg.min_success_percent:g} %",
                       figures)
    tolerated = [v * cfg.latency_tolerance for v in stable.latencies]
    u, p_slower, p_within = mann_whitney(canary.latencies, tolerated)
    alpha = 1.0 - cfg.confidence
    figures.update(p95_ratio=_ratio(c["p95_ms"], s["p95_ms"]), p99_ratio=_ratio(c["p99_ms"], s["p99_ms"]),
                   mann_whitney_u=u, p_slower=round(p_slower, 6), p_within=round(p_within, 6),
                   alpha=round(alpha, 6), tolerance=cfg.latency_tolerance)
    tails = f"p95 {figures['p95_ratio']}x, p99 {figures['p99_ratio']}x stable"
    if p_slower < alpha:
        return Verdict("fail", f"latency: slower than stable x{cfg.latency_tolerance:g} (Mann-Whitney "
                       f"p={p_slower:.3g} < {alpha:g}; {tails})", figures)
    if p_within < alpha:
        return Verdict("pass", f"success {canary.success_percent:.2f} %, latency within x{cfg.latency_tolerance:g} "
                       f"of stable (p={p_within:.3g}; {tails})", figures)
    return Verdict("inconclusive", f"latency neither within nor beyond x{cfg.latency_tolerance:g} of stable at "
                   f"{cfg.confidence:g} confidence (p={p_within:.3g} / {p_slower:.3g}; {tails})", figures)
