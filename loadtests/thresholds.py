"""A load run's `--slo` expressions as k6's thresholds: parsed once, judged against its summary after the run, so a release can gate on them.

An expression is `[SCOPE:]METRIC OP LIMIT`:
- SCOPE: a cluster (`green`, from each response's X-Served-By) or a request name (`login`);
  without one, all requests. A name that is both is the cluster.
- METRIC: `p50`, `p95`, `p99`, `p999` (milliseconds), `errors` (share of failed requests) or
  `count` (requests).
- OP: `<`, `<=`, `>`, `>=`.
- LIMIT: a number (`300`, `300ms`, `1.5s` for latency; `1%` or `0.01` for errors; a whole number
  for count), or another figure of the same kind with an optional factor: `blue:p99*1.2`.

Percentiles are the corrected ones (measured from each request's intended send time, the open
model) where the run has them, else Locust's: an SLO should hold on the honest figure. A figure
that has no requests behind it cannot show an SLO holds, so it counts as a breach.
Why a parser of our own: k6's threshold grammar is the model ops know, and Locust has none.
Not the router's live watch of each cluster's objective while traffic flows: that is canary's own `slo` module.
"""
from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LATENCY = ("p50", "p95", "p99", "p999")
METRICS = (*LATENCY, "errors", "count")
COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_EXPRESSION = re.compile(r"\s*(?:(?P<scope>[^:<>=*]+?)\s*:\s*)?(?P<metric>\w+)\s*(?P<op><=|>=|<|>)\s*(?P<rhs>.*?)\s*")
_NUMBER = re.compile(r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|%)?")
_FIGURE = re.compile(r"(?:(?P<scope>[^:<>=*]+?)\s*:\s*)?(?P<metric>\w+)(?:\s*\*\s*(?P<factor>\d+(?:\.\d+)?))?")


class SloError(ValueError):
    """A malformed expression: the message quotes it and says what is wrong (the CLI exits 2)."""


@dataclass(frozen=True)
class Figure:
    """One figure of a summary: `metric` of a cluster, a request name, or (scope None) all requests."""

    scope: str | None
    metric: str

    def __str__(self) -> str:
        return f"{self.scope}:{self.metric}" if self.scope else self.metric


@dataclass(frozen=True)
class Slo:
    text: str
    left: Figure
    op: str
    limit: float | None = None       # an absolute limit (ms, a fraction, or a count) ...
    right: Figure | None = None      # ... or another figure times `factor`
    factor: float = 1.0


@dataclass(frozen=True)
class Verdict:
    slo: Slo
    held: bool
    actual: float | None
    limit: float | None
    line: str  # printed as is, in the terminal and the reports


def _metric(name: str, text: str) -> str:
    if name not in METRICS:
        raise SloError(f"--slo {text!r}: unknown metric {name!r} (one of {', '.join(METRICS)})")
    return name


def _kind(metric: str) -> str:
    return "latency" if metric in LATENCY else metric


def _absolute(metric: str, value: float, unit: str | None, text: str) -> float:
    """The limit in the summary's units: milliseconds, a fraction of requests, a count."""
    if metric in LATENCY:
        if unit == "%":
            raise SloError(f"--slo {text!r}: a latency limit is in ms or s, not %")
        return value * 1000 if unit == "s" else value
    if metric == "errors":
        if unit in ("ms", "s"):
            raise SloError(f"--slo {text!r}: an errors limit is a share like 1% or 0.01")
        fraction = value / 100 if unit == "%" else value
        if fraction > 1:
            raise SloError(f"--slo {text!r}: an errors limit is at most 100% (or 1)")
        return fraction
    if unit is not None or value != int(value):
        raise SloError(f"--slo {text!r}: a count limit is a whole number")
    return value


def parse(text: str) -> Slo:
    """One --slo expression, or SloError naming it and its problem."""
    match = _EXPRESSION.fullmatch(text)
    if match is None or not match["rhs"]:
        raise SloError(f"--slo {text!r}: expected [SCOPE:]METRIC<LIMIT, e.g. p95<300, green:p99<blue:p99*1.2, errors<1%")
    left = Figure(match["scope"], _metric(match["metric"], text))
    rhs = match["rhs"]
    if number := _NUMBER.fullmatch(rhs):
        limit = _absolute(left.metric, float(number["value"]), number["unit"], text)
        return Slo(text.strip(), left, match["op"], limit=limit)
    figure = _FIGURE.fullmatch(rhs)
    if figure is None:
        raise SloError(f"--slo {text!r}: the limit {rhs!r} is neither a number nor a figure like blue:p99*1.2")
    right = Figure(figure["scope"], _metric(figure["metric"], text))
    if _kind(right.metric) != _kind(left.metric):
        raise SloError(f"--slo {text!r}: {left.metric} cannot be compared with {right.metric}")
    if right == left:
        raise SloError(f"--slo {text!r}: compares a figure with itself")
    return Slo(text.strip(), left, match["op"], right=right, factor=float(figure["factor"] or 1))


def parse_all(texts: Iterable[str]) -> list[Slo]:
    return [parse(text) for text in texts]


def _stats(summary: Mapping[str, Any], scope: str | None) -> Mapping[str, Any] | None:
    if scope is None:
        return summary.get("total")
    for group in ("clusters", "endpoints"):
        if scope in summary.get(group, {}):
            return summary[group][scope]
    return None


def value(summary: Mapping[str, Any], figure: Figure) -> float | None:
    """The figure's value in `summary` (summary.json's shape), or None without requests behind it."""
    stats = _stats(summary, figure.scope)
    if not stats or not stats.get("count"):
        return None
    if figure.metric == "count":
        return float(stats["count"])
    if figure.metric == "errors":
        return stats.get("errors", 0) / stats["count"]
    corrected = stats.get("corrected") or {}
    found = corrected.get(figure.metric, stats.get(figure.metric))
    return None if found is None or (isinstance(found, float) and math.isnan(found)) else float(found)


def _show(metric: str, amount: float) -> str:
    if metric == "errors":
        return f"{amount * 100:.2f}%"
    if metric == "count":
        return f"{amount:.0f}"
    return f"{amount:.1f} ms"


def check(slo: Slo, summary: Mapping[str, Any]) -> Verdict:
    actual = value(summary, slo.left)
    base = value(summary, slo.right) if slo.right is not None else None
    limit = slo.limit if slo.right is None else (None if base is None else base * slo.factor)
    if actual is None or limit is None:
        missing = slo.left if actual is None else slo.right
        return Verdict(slo, False, actual, limit, f"BREACH {slo.text}: no requests behind {missing}, so it cannot be shown to hold")
    held = COMPARATORS[slo.op](actual, limit)
    against = _show(slo.left.metric, limit)
    if slo.right is not None:
        factor = f" x {slo.factor:g}" if slo.factor != 1 else ""
        against += f" ({slo.right} {_show(slo.right.metric, base)}{factor})"
    word = "ok" if held else "BREACH"
    return Verdict(slo, held, actual, limit,
                   f"{word} {slo.text}: {slo.left} is {_show(slo.left.metric, actual)}, limit {slo.op} {against}")


def gate(slos: Iterable[Slo], summary: Mapping[str, Any]) -> tuple[list[Verdict], int]:
    """Every verdict and the run's exit code: 0 when every SLO held, 1 when one was breached."""
    verdicts = [check(slo, summary) for slo in slos]
    return verdicts, 0 if all(v.held for v in verdicts) else 1
