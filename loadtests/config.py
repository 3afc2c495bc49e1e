"""One load run's settings inside Locust: its own command-line options (`--lt-*`, set by `python -m loadtests run`) and secrets from the environment.

The options travel from the master to every worker with Locust's own spawn message, so a worker on
another machine needs only the same environment variables (LOADTEST_PASSWORD, LOADTEST_CLIENT_SECRET)
and the locustfile (docs/loadtests.md) — or, with --lt-accounts-file, the same accounts file at that path.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from loadtests import accounts_file, pacing, scenarios
from loginsvc.accounts.load_users import email_of

PASSWORD_ENV = "LOADTEST_PASSWORD"
CLIENT_SECRET_ENV = "LOADTEST_CLIENT_SECRET"
DEMO_ACCOUNTS = ("demo@example.test", "demo2@example.test")


@dataclass(frozen=True)
class Product:
    client_id: str
    client_secret: str
    redirect_uri: str
    post_logout_uri: str


@dataclass
class RunConfig:
    scenario: scenarios.Scenario
    processes: int                   # generator processes (Locust's --processes; 1 without it)
    accounts: list[str]
    passwords: dict[str, str]        # email -> password (one shared password, or each its own from a file)
    product: Product
    wrong_passwords: pacing.WrongPasswordBudget
    started: float

    @property
    def rate_at(self) -> Callable[[float], float] | None:
        return self.scenario.rate_at if self.scenario.rate else None


def add_options(parser: Any) -> None:
    """The locustfile's options (Locust's own parser; `python -m loadtests run` fills them in)."""
    group = parser.add_argument_group("loadtests", "set by `python -m loadtests run` (docs/loadtests.md)")
    group.add_argument("--lt-scenario", default="steady", choices=sorted(scenarios.SCENARIOS))
    group.add_argument("--lt-duration", type=float, default=60.0)
    group.add_argument("--lt-users", type=int, default=20, help="users (the open model's concurrency)")
    group.add_argument("--lt-rate", type=float, default=0.0, help="open model: tasks per second (0: closed)")
    group.add_argument("--lt-slo", action="append", default=[])
    group.add_argument("--lt-out", default="")
    group.add_argument("--lt-admin", default="")
    group.add_argument("--lt-var-dir", default="")
    group.add_argument("--lt-kill", default="", help="failover: the cluster to kill (default: the stable one)")
    group.add_argument("--lt-accounts", default="loadtest:50", help="PREFIX:COUNT, or demo")
    group.add_argument("--lt-accounts-file", default="", help="email:password lines (loadtests/accounts_file.py); "
                       "replaces --lt-accounts and LOADTEST_PASSWORD")
    group.add_argument("--lt-client-id", default="loadtest")
    group.add_argument("--lt-redirect-uri", default="http://127.0.0.1:9/loadtest/callback")
    group.add_argument("--lt-post-logout-uri", default="http://127.0.0.1:9/loadtest/")


def accounts(spec: str) -> list[str]:
    """`demo` or PREFIX:COUNT, as ensure_load_users names them."""
    if spec == "demo":
        return list(DEMO_ACCOUNTS)
    prefix, _, count = spec.rpartition(":")
    return [email_of(i, prefix) for i in range(int(count))]


def credentials(options: Any) -> dict[str, str]:
    """email -> password: the file's accounts, or the named ones with LOADTEST_PASSWORD."""
    if getattr(options, "lt_accounts_file", ""):
        return accounts_file.read(Path(options.lt_accounts_file))
    return dict.fromkeys(accounts(options.lt_accounts), os.environ.get(PASSWORD_ENV, ""))


def build(options: Any, started: float | None = None) -> RunConfig:
    scenario = scenarios.make(options.lt_scenario, options.lt_duration, options.lt_users, options.lt_rate or None,
                              slos=options.lt_slo, kill=options.lt_kill)
    passwords = credentials(options)
    emails = list(passwords)
    processes = max(1, int(getattr(options, "processes", None) or 1))
    return RunConfig(
        scenario=scenario, processes=processes, accounts=emails, passwords=passwords,
        product=Product(options.lt_client_id, os.environ.get(CLIENT_SECRET_ENV, ""), options.lt_redirect_uri,
                        options.lt_post_logout_uri),
        wrong_passwords=pacing.WrongPasswordBudget(emails, processes),
        started=time.time() if started is None else started)


_CURRENT: dict[int, RunConfig] = {}


def current(environment: Any) -> RunConfig:
    """This process's RunConfig, built from the options on first use (a worker gets them with its first spawn)."""
    config = _CURRENT.get(id(environment))
    if config is None:
        config = _CURRENT[id(environment)] = build(environment.parsed_options)
    return config


def reset(environment: Any, started: float) -> RunConfig:
    """A new run starts (Locust's test_start on this process): the schedule counts from now."""
    config = _CURRENT[id(environment)] = build(environment.parsed_options, started)
    return config
