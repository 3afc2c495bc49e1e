"""One load run's settings inside Locust: its own options (`--lt-*`, set by `python -m loadtests run`) and secrets from the environment.

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

from deploy.dovecot_server import IMAP_PORT
from deploy.stack import maildir as stack_maildir
from loadtests import accounts_file, pacing, scenarios
from loginsvc import conf
from loginsvc.accounts.load_users import email_of, totp_secret

PASSWORD_ENV = "LOADTEST_PASSWORD"
CLIENT_SECRET_ENV = "LOADTEST_CLIENT_SECRET"
# demo2@example.test has an authenticator app whose secret only the stack's var/ holds: the password journeys
# would stop at its second step, and the MFA journey knows only the load-test accounts' derived secrets.
DEMO_ACCOUNTS = ("demo@example.test",)
MFA_SHARE = 5          # by default one account in 5 of PREFIX:COUNT has an authenticator app
RECOVERY_LIMIT_KEY = "RECOVERY_CODES_PER_HOUR"
IMAP_MAX_PER_SECOND = 50.0   # the IMAP journey's highest rate: one user's logins, each its own connection
IMAP_ACCOUNTS = 10           # the IMAP journey's app passwords: one for each of the first 10 password accounts


def mfa_count(accounts: int) -> int:
    """How many of `accounts` load-test accounts get an authenticator app by default (ensure_load_users --mfa):
    10 of the default 50, enough for 10 sign-ins with a code per 30 s; at least one without, for the others."""
    return accounts // MFA_SHARE


@dataclass(frozen=True)
class Product:
    client_id: str
    client_secret: str
    redirect_uri: str
    post_logout_uri: str


@dataclass
class RunSettings:
    scenario: scenarios.Scenario
    processes: int                   # generator processes (Locust's --processes; 1 without it)
    accounts: list[str]
    passwords: dict[str, str]        # email -> password (one shared password, or each its own from a file)
    totp_secrets: dict[str, str]     # email -> authenticator-app secret: the accounts that have one
    codes: pacing.CodeSteps          # which of those this process may sign in with now
    product: Product
    wrong_passwords: pacing.WrongPasswordBudget
    started: float
    recovery_per_minute: float = 0.0  # the password recovery journey's asks per minute (0: not in this run)
    recovery_limit: int = 5           # the service's codes per address per hour (recovery_limit())
    maildir: Path = Path("var/mail")  # the stack's Maildir, where the recovery mail is timed
    mail_grace: float = 60.0          # after the run, how long to wait for mail still due
    imap_per_second: float = 0.0      # the IMAP journey's logins per second (0: not in this run)
    imap_port: int = IMAP_PORT        # Dovecot's IMAP port on 127.0.0.1
    var_dir: Path = Path("var")       # the stack's state: its spec names the nodes whose metrics are read

    @property
    def rate_at(self) -> Callable[[float], float] | None:
        return self.scenario.rate_at if self.scenario.rate else None

    @property
    def password_accounts(self) -> list[str]:
        """The accounts that sign in with a password alone (the others would stop at the second step)."""
        return [a for a in self.accounts if a not in self.totp_secrets]


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
    group.add_argument("--lt-mfa", type=int, default=-1,
                       help="the first N of PREFIX:COUNT have an authenticator app (ensure_load_users --mfa N); "
                            f"default: one in {MFA_SHARE}, as `python -m loadtests run` creates them")
    group.add_argument("--lt-accounts-file", default="", help="email:password lines (loadtests/accounts_file.py); "
                       "replaces --lt-accounts and LOADTEST_PASSWORD")
    group.add_argument("--lt-recovery-per-minute", type=float, default=0.0,
                       help="the password recovery journey: codes asked per minute, each timed to its mail in the "
                            "Maildir under --lt-var-dir (0: off; `python -m loadtests run` asks 4)")
    group.add_argument("--lt-mail-grace", type=float, default=60.0,
                       help="after the run, seconds to wait at most for recovery mail still due")
    group.add_argument("--lt-imap-per-second", type=float, default=0.0,
                       help=f"the IMAP journey: app-password logins per second to Dovecot on 127.0.0.1 (0: off; at "
                            f"most {IMAP_MAX_PER_SECOND:g})")
    group.add_argument("--lt-imap-port", type=int, default=IMAP_PORT, help="Dovecot's IMAP port on 127.0.0.1")
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


def totp_secrets(options: Any, passwords: dict[str, str]) -> dict[str, str]:
    """email -> secret of the accounts with an authenticator app: the first --lt-mfa of PREFIX:COUNT, whose
    secrets derive from the password (load_users.totp_secret); none for demo or an accounts file."""
    if getattr(options, "lt_accounts_file", "") or options.lt_accounts == "demo":
        return {}
    emails = list(passwords)
    wanted = getattr(options, "lt_mfa", -1)
    count = mfa_count(len(emails)) if wanted < 0 else wanted
    if count >= len(emails):
        raise ValueError(f"--lt-mfa: {count} of {len(emails)} accounts leaves none for the password journeys")
    return {email: totp_secret(passwords[email], email) for email in emails[:count]}


def recovery_limit(environ: dict[str, str] | None = None) -> int:
    """The service's codes per address per hour: LOGINSVC_RECOVERY_CODES_PER_HOUR as the stack would read it (the
    run's shell is where `make up` was started, as a rule), else the service's default. A stack started with
    another value than this process sees would turn limited asks into lost mail: set it alike for both."""
    environ = dict(os.environ) if environ is None else environ
    option = conf.OPTIONS[RECOVERY_LIMIT_KEY]
    raw = environ.get(conf.PREFIX + RECOVERY_LIMIT_KEY)
    return int(option.parse(raw)) if raw else int(option.default)


def worker_share(environment: Any) -> tuple[int, int]:
    """(this process's index, how many generator processes): a worker's index from its master, and the
    master's --expect-workers (Locust sends it to every worker; --processes N sets it to N)."""
    runner = getattr(environment, "runner", None)
    if runner is None or type(runner).__name__ != "WorkerRunner":
        return 0, 1
    return max(0, int(runner.worker_index)), max(1, int(getattr(environment.parsed_options, "expect_workers", 1)))


def build(options: Any, started: float | None = None, share: tuple[int, int] = (0, 1)) -> RunSettings:
    scenario = scenarios.make(options.lt_scenario, options.lt_duration, options.lt_users, options.lt_rate or None,
                              slos=options.lt_slo, kill=options.lt_kill)
    passwords = credentials(options)
    emails = list(passwords)
    processes = max(1, int(getattr(options, "processes", None) or 1))
    secrets = totp_secrets(options, passwords)
    var_dir = Path(getattr(options, "lt_var_dir", "") or "var")
    return RunSettings(
        scenario=scenario, processes=processes, accounts=emails, passwords=passwords, totp_secrets=secrets,
        codes=pacing.CodeSteps(list(secrets), *share),
        product=Product(options.lt_client_id, os.environ.get(CLIENT_SECRET_ENV, ""), options.lt_redirect_uri,
                        options.lt_post_logout_uri),
        wrong_passwords=pacing.WrongPasswordBudget(emails, processes),
        started=time.time() if started is None else started,
        recovery_per_minute=max(0.0, float(getattr(options, "lt_recovery_per_minute", 0.0) or 0.0)),
        recovery_limit=recovery_limit(), maildir=stack_maildir(var_dir),
        mail_grace=max(0.0, float(getattr(options, "lt_mail_grace", 60.0))),
        imap_per_second=min(IMAP_MAX_PER_SECOND, max(0.0, float(getattr(options, "lt_imap_per_second", 0.0) or 0.0))),
        imap_port=int(getattr(options, "lt_imap_port", IMAP_PORT) or IMAP_PORT), var_dir=var_dir)


_CURRENT: dict[int, RunSettings] = {}


def current(environment: Any) -> RunSettings:
    """This process's RunSettings, built from the options on first use (a worker gets them with its first spawn)."""
    settings = _CURRENT.get(id(environment))
    if settings is None:
        settings = _CURRENT[id(environment)] = build(environment.parsed_options, share=worker_share(environment))
    return settings


def reset(environment: Any, started: float) -> RunSettings:
    """A new run starts (Locust's test_start on this process): the schedule counts from now."""
    settings = _CURRENT[id(environment)] = build(environment.parsed_options, started, worker_share(environment))
    return settings
