"""The locustfile of every load run: the journeys, one shape that plays the chosen scenario, and our collectors.

`python -m loadtests run` starts Locust on it; for workers on other machines see docs/loadtests.md.
"""
from __future__ import annotations

from typing import Any

from locust import LoadTestShape, events

from loadtests import config
from loadtests.collect import Collector
from loadtests.journeys import MfaUser, PortalUser, ProductUser

__all__ = ["MfaUser", "PortalUser", "ProductUser", "ScenarioShape"]


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    config.add_options(parser)


@events.init.add_listener
def _collect(environment: Any, **_: Any) -> None:
    environment.loadtests = Collector(environment)


class ScenarioShape(LoadTestShape):
    """Users over time as the scenario says (constant in the open model, where the rate changes instead);
    None ends the run: at its duration, or when a capacity step broke an SLO."""

    def tick(self) -> tuple[int, float] | None:
        scenario = config.current(self.runner.environment).scenario
        elapsed = self.get_run_time()
        if scenario.stop_now(elapsed):
            return None
        users = scenario.users_at(elapsed)
        return users, float(max(users, 1))
