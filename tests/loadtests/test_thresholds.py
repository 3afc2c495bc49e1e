"""--slo expressions (loadtests/thresholds.py): the issue's grammar, k6-style verdicts, exit codes, and clear refusals."""
from __future__ import annotations

from typing import Any

import pytest

from loadtests import thresholds


def summary(**overrides: Any) -> dict[str, Any]:
    """A summary.json as a run writes it: all requests, per cluster, per request name."""
    base: dict[str, Any] = {
        "total": {"count": 1000, "errors": 5, "p50": 20.0, "p95": 120.0, "p99": 400.0, "p999": 900.0},
        "clusters": {
            "blue": {"count": 800, "errors": 5, "p50": 22.0, "p95": 150.0, "p99": 500.0, "p999": 950.0},
            "green": {"count": 200, "errors": 0, "p50": 15.0, "p95": 40.0, "p99": 550.0, "p999": 600.0},
        },
        "endpoints": {
            "login": {"count": 100, "errors": 1, "p50": 90.0, "p95": 300.0, "p99": 1400.0, "p999": 1600.0},
            "session": {"count": 900, "errors": 4, "p50": 10.0, "p95": 30.0, "p99": 80.0, "p999": 200.0},
        },
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(("text", "held", "shown"), [
    ("p95<300", True, "p95 is 120.0 ms, limit < 300.0 ms"),
    ("p99<300", False, "p99 is 400.0 ms, limit < 300.0 ms"),
    ("p99<800", True, "p99 is 400.0 ms"),
    ("login:p99<1500", True, "login:p99 is 1400.0 ms"),
    ("login:p99<1.2s", False, "limit < 1200.0 ms"),
    ("green:p99<500", False, "green:p99 is 550.0 ms"),
    ("green:p95<=40ms", True, "limit <= 40.0 ms"),
    ("errors<1%", True, "errors is 0.50%, limit < 1.00%"),
    ("errors<0.004", False, "errors is 0.50%, limit < 0.40%"),
    ("green:errors<=0%", True, "green:errors is 0.00%"),
    ("count>=1000", True, "count is 1000"),
    ("green:p99<blue:p99*1.2", True, "limit < 600.0 ms (blue:p99 500.0 ms x 1.2)"),
    ("green:p99<blue:p99", False, "limit < 500.0 ms (blue:p99 500.0 ms)"),
    ("green:p95 < blue:p95 * 0.3", True, "green:p95 is 40.0 ms, limit < 45.0 ms"),
])
def test_the_issues_expressions_give_k6_style_verdicts(text: str, held: bool, shown: str) -> None:
    [verdict], code = thresholds.gate([thresholds.parse(text)], summary())
    assert verdict.held is held
    assert code == (0 if held else 1)
    assert verdict.line.startswith("ok " if held else "BREACH ")
    assert shown in verdict.line


def test_one_breach_among_several_sets_exit_code_1() -> None:
    verdicts, code = thresholds.gate(thresholds.parse_all(["p95<300", "errors<1%", "green:p99<500"]), summary())
    assert [v.held for v in verdicts] == [True, True, False] and code == 1
    assert thresholds.gate(thresholds.parse_all(["p95<300", "errors<1%"]), summary())[1] == 0


def test_corrected_percentiles_are_judged_where_the_run_has_them() -> None:
    data = summary()
    data["clusters"]["green"]["corrected"] = {"p99": 2400.0}  # a stall the closed loop hid
    [verdict], code = thresholds.gate([thresholds.parse("green:p99<1000")], data)
    assert not verdict.held and verdict.actual == 2400.0 and code == 1
    assert thresholds.check(thresholds.parse("green:p95<100"), data).held  # p95 has no corrected figure: the raw one


@pytest.mark.parametrize(("text", "missing"), [
    ("purple:p99<500", "purple:p99"),
    ("green:p99<purple:p99*2", "purple:p99"),
])
def test_a_figure_without_requests_is_a_breach_not_a_pass(text: str, missing: str) -> None:
    verdict = thresholds.check(thresholds.parse(text), summary())
    assert not verdict.held and f"no requests behind {missing}" in verdict.line


def test_a_cluster_without_requests_is_a_breach() -> None:
    data = summary()
    data["clusters"]["green"] = {"count": 0, "errors": 0, "p50": None, "p95": None, "p99": None, "p999": None}
    assert not thresholds.check(thresholds.parse("green:p99<500"), data).held
    assert not thresholds.check(thresholds.parse("green:errors<1%"), data).held


def test_a_name_that_is_a_cluster_and_a_request_name_means_the_cluster() -> None:
    data = summary()
    data["endpoints"]["green"] = {"count": 10, "errors": 0, "p50": 1.0, "p95": 1.0, "p99": 1.0, "p999": 1.0}
    assert thresholds.check(thresholds.parse("green:p99<500"), data).actual == 550.0


@pytest.mark.parametrize(("text", "problem"), [
    ("", "expected [SCOPE:]METRIC<LIMIT"),
    ("p95", "expected [SCOPE:]METRIC<LIMIT"),
    ("p95<", "expected [SCOPE:]METRIC<LIMIT"),
    ("p95=300", "expected [SCOPE:]METRIC<LIMIT"),
    ("p95<<300", "neither a number nor a figure"),
    ("p95<-5", "neither a number nor a figure"),
    ("p95<fast", "unknown metric 'fast'"),
    ("p90<300", "unknown metric 'p90'"),
    ("latency<300", "unknown metric 'latency'"),
    ("p95<3%", "not %"),
    ("errors<5ms", "a share like 1%"),
    ("errors<150%", "at most 100%"),
    ("errors<2", "at most 100%"),
    ("count>1.5", "a whole number"),
    ("green:p99<blue:errors", "cannot be compared"),
    ("green:p99<green:p99*2", "with itself"),
    ("green:p99<blue:p99*x", "neither a number nor a figure"),
])
def test_a_malformed_expression_is_refused_naming_it(text: str, problem: str) -> None:
    with pytest.raises(thresholds.SloError) as refused:
        thresholds.parse(text)
    message = str(refused.value)
    assert message.startswith(f"--slo {text!r}: ") and problem in message
    assert "\n" not in message  # one line, as the CLI prints it before exit 2
