"""The locustfile of every load run: the journeys, one shape that plays the chosen scenario, and our collectors.

`python -m loadtests run` starts Locust on it; for workers on other machines see docs/loadtests.md.
"""
from __future__ import annotations

from typing import Any

from locust import LoadTestShape, events

from loadtests import run_settings
from loadtests.collect import Collector
from loadtests.journeys import MfaUser, PortalUser, ProductUser
from loadtests.imap import ImapUser
from loadtests.recovery import RecoveryUser

__all__ = ["ImapUser", "MfaUser", "PortalUser", "ProductUser", "RecoveryUser", "ScenarioShape"]
JOURNEYS = (MfaUser, PortalUser, ProductUser)   # weighted; RecoveryUser and ImapUser are one each (fixed_count)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    run_settings.add_options(parser)


@events.init.add_listener
def _collect(environment: Any, **_: Any) -> None:
    environment.loadtests = Collector(environment)


class ScenarioShape(LoadTestShape):
    """Users over time as the scenario says (constant in the open model, where the rate changes instead);
    None ends the run: at its duration, or when a capacity step broke an SLO.

    The user classes are named each tick, of those Locust was given (all, or those on its command line): the
    recovery and IMAP journeys' one user each comes on top of the scenario's users when the run has it, and not
    at all otherwise (a fixed_count user would otherwise take the place of one of the others)."""

    def tick(self) -> tuple[int, float, list[type[Any]]] | None:
        assert self.runner is not None, "Locust gives a shape its runner before the first tick"
        run = run_settings.current(self.runner.environment)
        elapsed = self.get_run_time()
        if run.scenario.stop_now(elapsed):
            return None
        users = run.scenario.users_at(elapsed)
        given = self.runner.user_classes
        classes: list[type[Any]] = [c for c in JOURNEYS if c in given]
        extra = [c for c, on in ((RecoveryUser, run.recovery_per_minute > 0), (ImapUser, run.imap_per_second > 0))
                 if on and c in given]
        return users + len(extra), float(max(users, 1)), [*classes, *extra]
