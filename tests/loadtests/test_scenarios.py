"""Scenarios' load over time, the capacity rule, the open model's schedule and the wrong-password budget."""
from __future__ import annotations

import math
import time

import pytest

from loadtests import pacing, scenarios
from loadtests.timeline import Timeline


def test_each_scenario_shapes_its_load_over_time() -> None:
    ramp = scenarios.make("ramp", 100, 20, None)
    assert [ramp.users_at(t) for t in (0, 30, 60, 90)] == [2, 10, 20, 20]
    spike = scenarios.make("spike", 100, 20, None)
    assert [spike.users_at(t) for t in (10, 45, 70)] == [5, 20, 5]
    steady = scenarios.make("steady", 100, 20, 40.0)
    assert steady.users_at(50) == 20 and steady.rate_at(50) == 40.0   # open model: users stay, rate moves
    capacity = scenarios.make("capacity", 60, 10, 4.0)
    assert [capacity.rate_at(t) for t in (0, 10, 20, 59)] == [4.0, 6.0, 9.0, 4.0 * 1.5 ** 5]
    assert [round(s.rate, 3) for s in capacity.planned()] == [4.0, 6.0, 9.0, 13.5, 20.25, 30.375]
    canary = scenarios.make("canary-ramp", 90, 10, None)
    assert [(s.share, s.start, s.end) for s in canary.planned()] == [(12, 0, 30), (20, 30, 60), (50, 60, 90)]


def step(name: str, rate: float, logins: int, sessions: int, seconds: float = 10.0) -> dict:
    count = logins + sessions
    return {"name": name, "rate": rate, "start": 0.0, "end": seconds, "total": {"count": count},
            "endpoints": {"login": {"count": logins}, "session": {"count": sessions}}}


def test_capacity_is_the_last_step_that_held_and_nodes_follow_the_headroom_rule() -> None:
    steps = [step("4/s", 4, 20, 200), step("6/s", 6, 30, 300), step("9/s", 9, 45, 450)]
    result = scenarios.capacity_result(steps, broken_at=2, nodes={"blue": 2, "green": 2}, peak=12.0)
    assert result["sustainable_rate"] == 6 and result["broken_at_step"] == "9/s"
    assert result["logins_per_s"] == 3.0 and result["session_checks_per_s"] == 30.0
    assert result["per_node_rate"] == 1.5                      # 6 tasks/s over 4 nodes
    assert result["nodes_per_cluster_for_headroom"] == math.ceil(1.5 * 12.0 / 1.5) == 12
    held = scenarios.capacity_result(steps, broken_at=None, nodes={"blue": 2, "green": 2}, peak=9.0)
    assert held["sustainable_rate"] == 9 and "not reached" in held["note"]
    none = scenarios.capacity_result(steps, broken_at=0, nodes={"blue": 2}, peak=4.0)
    assert none["sustainable_rate"] is None and "start lower" in none["note"]


def test_open_model_schedule_splits_the_rate_over_users_and_charges_a_late_start() -> None:
    user = pacing.Pacing(users=10, rate_at=lambda elapsed: 20.0, started=time.time())
    assert user.lag() is None                                  # on_start's sign-in is not a scheduled task
    first = user.wait()
    assert 0 <= first <= 0.5                                   # a random phase within one interval (10/20 s)
    assert user.slot - user.due == pytest.approx(0.5)          # then one task every users/rate seconds
    user.due = time.time() - 2.0                               # as if the previous task overran by 2 s
    assert user.lag() == pytest.approx(2.0, abs=0.1)
    assert user.lag() == user.lag()                            # fixed for the whole task
    closed = pacing.Pacing(users=10, rate_at=None, started=time.time())
    assert pacing.THINK_SECONDS[0] <= closed.wait() <= pacing.THINK_SECONDS[1] and closed.lag() is None


def test_wrong_password_budget_stays_within_the_brute_force_limits() -> None:
    accounts = [f"a{i}" for i in range(10)]
    budget = pacing.WrongPasswordBudget(accounts, processes=2)
    # 15 per account per hour at most: 3600 / (15 * 10) = 24 s between two, times two processes.
    assert budget.spacing == pytest.approx(48.0)
    assert budget.take() is not None and budget.take() is None   # one at once, then none until spacing passed
    budget.next_at = 0
    seen = []
    for _ in range(len(accounts) * len(budget.SOURCES)):
        budget.next_at = 0
        seen.append(budget.take())
    per_source = {source for _, source in seen}
    assert len(per_source) == len(budget.SOURCES) and {a for a, _ in seen} == set(accounts)
    assert all(source.startswith("127.0.0.") for source in per_source)


def test_a_window_holds_exact_figures_of_its_seconds_only() -> None:
    timeline = Timeline()
    for i in range(100):
        timeline.add(1000, "blue", "session", (i + 1) * 1000, (i + 1) * 1000, i < 3)
    timeline.add(1001, "green", "login", 500_000, 900_000, False)
    timeline.add(1002, None, "login", 1000, 1000, True)
    first = timeline.window(1000, 1001)
    assert first["total"]["count"] == 100 and first["total"]["errors"] == 3
    assert first["clusters"]["blue"]["p95"] == 95.0 and first["clusters"]["blue"]["p99"] == 99.0
    both = timeline.window(1000, 1003)
    assert both["clusters"]["green"]["corrected"]["p50"] == 900.0 and both["clusters"]["green"]["p50"] == 500.0
    assert both["unattributed"]["count"] == 1 and both["endpoints"]["login"]["count"] == 2
    assert both["requests"] == {"blue": {"session": 100}, "green": {"login": 1}, "unattributed": {"login": 1}}
    merged = Timeline()
    merged.merge(timeline.drain())
    assert merged.window(1000, 1003) == both and timeline.window(1000, 1003)["total"]["count"] == 0
