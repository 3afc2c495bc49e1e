"""The canary analysis and the plan's decisions, as functions: the Mann-Whitney U test against scipy's, each gate
of `judge`, each step of a plan (pass, last pass = promotion, fail = rollback, inconclusive = extend then pause), the
proactive shift's steps, cap and hysteresis, and the lease."""
from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from scipy.stats import mannwhitneyu

from canary.automation import plan
from canary.automation.analysis import Verdict, judge, mann_whitney
from canary.automation.lease import FileLease
from canary.automation.proactive_shift import ProactiveShift
from canary.automation.slo import SloWatch
from canary.config.loading import from_dict
from canary.config.settings import AnalysisConfig, ConfigError, ProactiveShiftConfig, SloConfig
from canary.dataplane.records import SAMPLES_PER_SECOND, Records, Window, percentile

RNG = random.Random(7)


def latencies(n: int, median_ms: float, spread: float = 0.4) -> list[float]:
    return [RNG.lognormvariate(0, spread) * median_ms / 1000 for _ in range(n)]


@pytest.mark.parametrize("n1,n2,quantum", [(8, 9, 1.0), (60, 45, 0.001), (400, 700, 0.01), (2000, 1500, 0.0)])
def test_mann_whitney_equals_scipys_asymptotic_test_with_ties(n1: int, n2: int, quantum: float) -> None:
    def sample(n: int, shift: float) -> list[float]:
        values = latencies(n, 10 * shift)
        return [round(v / quantum) * quantum for v in values] if quantum else values   # rounding makes ties
    a, b = sample(n1, 1.0), sample(n2, 1.08)
    u, p_greater, p_less = mann_whitney(a, b)
    for alternative, ours in (("greater", p_greater), ("less", p_less)):
        reference = mannwhitneyu(a, b, alternative=alternative, method="asymptotic")
        assert u == pytest.approx(float(reference.statistic))
        assert ours == pytest.approx(float(reference.pvalue), rel=1e-9, abs=1e-15)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99), percentile(values, 100)) == \
        (50.0, 95.0, 99.0, 100.0)
    assert percentile([], 99) == 0.0


def window(n: int, median_ms: float, failed: int = 0) -> Window:
    return Window(n - failed, failed, latencies(n, median_ms))


CFG = AnalysisConfig()


def test_judge_passes_an_equal_canary_with_its_figures() -> None:
    verdict = judge(window(600, 20), window(2400, 20), CFG)
    assert verdict.outcome == "pass", verdict.reason
    figures = verdict.figures
    assert figures["canary"]["answers"] == 600 and figures["stable"]["answers"] == 2400
    assert figures["p_within"] < 0.05 and 0.7 < figures["p95_ratio"] < 1.3
    assert {"p50_ms", "p95_ms", "p99_ms", "success_percent"} <= set(figures["canary"])


def test_judge_fails_a_slower_canary_on_latency() -> None:
    verdict = judge(window(600, 40), window(600, 20), CFG)
    assert verdict.outcome == "fail" and verdict.reason.startswith("latency"), verdict.reason
    assert verdict.figures["p_slower"] < 0.05 and verdict.figures["p95_ratio"] > 1.5


def test_judge_fails_on_success_rate_below_99_percent_however_fast() -> None:
    verdict = judge(window(500, 5, failed=6), window(500, 20), CFG)   # 98.8 %
    assert verdict.outcome == "fail" and "success rate 98.80 %" in verdict.reason


def test_judge_never_guesses_on_few_samples() -> None:
    verdict = judge(window(99, 200), window(1000, 20), CFG)
    assert verdict.outcome == "inconclusive" and "too few samples: canary 99" in verdict.reason


def test_judge_is_inconclusive_between_within_and_beyond_the_tolerance() -> None:
    verdict = judge(window(150, 24), window(150, 20), CFG)   # 1.2x: right at the tolerance
    assert verdict.outcome == "inconclusive", verdict.reason
    assert verdict.figures["p_slower"] >= 0.05 and verdict.figures["p_within"] >= 0.05


def test_records_count_every_answer_and_keep_bounded_samples() -> None:
    records = Records()
    for i in range(SAMPLES_PER_SECOND + 50):
        records.answered(100.2, 0.01, ok=i % 10 != 0)
    records.attempt_failed(100.9)
    records.answered(101.5, 0.02, ok=True)
    w = records.window(100.0, 101.0)
    assert (w.good, w.failed, len(w.latencies)) == (225 + 1, 25 + 1, SAMPLES_PER_SECOND + 1)
    assert records.window(101.0, 102.0).total == 1 and records.window(90, 99).total == 0


# -- plans -------------------------------------------------------------------------------------------------
def state() -> dict:
    return {"stable": "blue", "canary": "green", "percent": 0.0, "drained": [], "version": 3}


PASS, FAIL = Verdict("pass", "fine", {"p95_ratio": 1.0}), Verdict("fail", "slow", {"p95_ratio": 3.0})
UNSURE = Verdict("inconclusive", "too few samples", {})


def test_a_plan_steps_through_its_shares_and_promotes_after_the_last() -> None:
    s = state()
    plan.start(s, [12, 20, 50, 100], 300, now=1000)
    assert s["percent"] == 12 and not plan.due(s, 1299) and plan.due(s, 1300)
    assert [plan.decide(s, PASS, 2, now) for now in (1300, 1600, 1900)] == ["plan_step"] * 3
    assert s["percent"] == 100 and s["plan"]["index"] == 3
    assert plan.decide(s, PASS, 2, 2200) == "plan_promoted"
    assert (s["stable"], s["canary"], s["percent"], s["plan"]["status"]) == ("green", "blue", 0.0, "promoted")
    assert [h["decision"] for h in s["plan_history"]] == ["start", "pass", "pass", "pass", "promoted"]
    assert plan.live(s) is None and not plan.due(s, 9999)


def test_a_failed_hold_rolls_back_and_ends_the_plan() -> None:
    s = state()
    plan.start(s, [20, 50], 60, now=0)
    assert plan.decide(s, FAIL, 2, 60) == "plan_rollback"
    assert s["percent"] == 0.0 and s["plan"]["status"] == "rolled_back"
    assert s["plan_history"][-1]["figures"] == {"p95_ratio": 3.0} and s["plan"]["last_verdict"]["outcome"] == "fail"


def test_an_inconclusive_hold_is_extended_then_the_plan_pauses() -> None:
    s = state()
    plan.start(s, [20, 50], 60, now=0)
    assert plan.decide(s, UNSURE, 2, 60) == "plan_extended" and plan.deadline(s["plan"]) == 120
    assert plan.decide(s, UNSURE, 2, 120) == "plan_extended" and plan.deadline(s["plan"]) == 180
    assert plan.decide(s, UNSURE, 2, 180) == "plan_paused"
    assert s["plan"]["status"] == "paused" and s["percent"] == 20 and not plan.due(s, 10_000)
    plan.resume(s, 500)
    assert s["plan"]["status"] == "running" and plan.deadline(s["plan"]) == 560   # the hold starts again


def test_plan_verbs_refuse_what_does_not_apply() -> None:
    s = state()
    with pytest.raises(plan.PlanError, match="no running plan"):
        plan.pause(s, "x", 0)
    plan.start(s, [50], 10, 0)
    with pytest.raises(plan.PlanError, match="already running") as e:
        plan.start(s, [20], 10, 0)
    assert e.value.conflict
    plan.abort(s, 1)
    assert s["percent"] == 0 and s["plan"]["status"] == "aborted"


@pytest.mark.parametrize("steps,message", [("12,x", "'x' is not a number"), ("20,12", "must rise"),
                                           ("0,50", "above 0"), ("50,101", "at most 100"), ([], "rising")])
def test_bad_steps_are_named(steps: object, message: str) -> None:
    with pytest.raises(plan.PlanError, match=message):
        plan.parse_steps(steps)


def test_history_is_bounded() -> None:
    s = state()
    for i in range(plan.HISTORY_KEEP + 20):
        plan.record(s, "note", str(i), now=i)
    assert len(s["plan_history"]) == plan.HISTORY_KEEP and s["plan_history"][-1]["reason"] == str(plan.HISTORY_KEEP + 19)


# -- proactive shift ---------------------------------------------------------------------------------------
def test_a_degraded_cluster_is_moved_in_capped_steps_and_back_with_hysteresis() -> None:
    cfg = ProactiveShiftConfig(sustain=2, recover_sustain=3, step_percent=25, max_percent=50, min_samples=50)
    shift = ProactiveShift(cfg)
    shifted: dict[str, float] = {}

    def looks(n: int, green_ms: float) -> list[tuple[str, float]]:
        out = []
        for _ in range(n):
            for move in shift.look({"blue": window(300, 20), "green": window(300, green_ms)}, shifted):
                shifted[move.cluster] = move.percent
                out.append((move.cluster, move.percent))
        return out
    assert looks(6, 400) == [("green", 25.0), ("green", 50.0)]          # every 2 looks, then the cap holds
    assert looks(2, 20) == []                                           # recovery must last 3 looks
    assert looks(1, 400) == []                                          # ... in a row
    assert looks(6, 20) == [("green", 25.0), ("green", 0.0)]
    assert looks(6, 35) == []      # 1.75x stable's p99: below the 3x line, so nothing moves away again


def test_no_shift_on_too_little_traffic() -> None:
    shift = ProactiveShift(ProactiveShiftConfig(sustain=1))
    assert shift.look({"blue": window(10, 20), "green": window(10, 900)}, {}) == []


def test_an_slo_breach_and_its_end_are_each_reported_once() -> None:
    watch = SloWatch(SloConfig(p99_ms=100, min_samples=50))
    looks = [watch.look({"blue": window(300, 20), "green": window(300, green_ms, failed=failed)})
             for green_ms, failed in ((20, 0), (300, 0), (300, 0), (20, 0), (20, 9), (20, 0), (20, 0))]
    changes = [(c.cluster, c.breached, c.text) for look in looks for c in look]
    assert [c[:2] for c in changes] == [("green", True), ("green", False), ("green", True), ("green", False)]
    assert changes[0][2].startswith("green: SLO breached over the last 60 s: p99 ")
    assert changes[1][2].startswith("green: SLO met again (success 100.00 %")
    assert changes[2][2] == "green: SLO breached over the last 60 s: success 97.00 % < 99 %"
    assert watch.look({"blue": window(10, 900)}) == []          # too few answers: no judgement


def test_bad_analysis_settings_name_the_key() -> None:
    clusters = [{"name": "a", "nodes": ["127.0.0.1:1"]}, {"name": "b", "nodes": ["127.0.0.1:2"]}]
    with pytest.raises(ConfigError, match=r"^analysis.confidence: must be at least 0.5 and below 1 \(got 1.0\)$"):
        from_dict({"clusters": clusters, "analysis": {"confidence": 1.0}})
    with pytest.raises(ConfigError, match=r"^proactive_shift.max_percent: must be between 0 and 90"):
        from_dict({"clusters": clusters, "proactive_shift": {"max_percent": 100}})
    with pytest.raises(ConfigError, match=r"^analysis.min_samples: expected an integer"):
        from_dict({"clusters": clusters, "analysis": {"min_samples": "many"}})


def test_the_file_lease_has_one_holder_until_it_lets_go(tmp_path: Path) -> None:
    first, second = FileLease(str(tmp_path / "lease")), FileLease(str(tmp_path / "lease"))
    assert asyncio.run(first.acquire()) and asyncio.run(first.acquire())
    assert not asyncio.run(second.acquire())
    first.release()
    assert asyncio.run(second.acquire())
    second.release()
