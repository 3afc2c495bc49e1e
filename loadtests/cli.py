"""`python -m loadtests run --scenario NAME …`: one headless Locust run against the stack, its reports, and an exit code a release can gate on.

Exit 0 when every --slo held, 1 when one was breached (or the run failed), 2 on bad arguments
(one line naming the argument). docs/loadtests.md has the whole story.

The target is this machine's `make up` stack, where the run creates its accounts and product: a --host
or --admin that is not a loopback address is refused before any request. A staging stack needs
--remote, and then nothing is created there: the accounts come from --accounts FILE.
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, NoReturn
from urllib.parse import urlsplit

from deploy.dovecot_server import IMAP_PORT, PACKAGES
from deploy.node import port_open
from deploy.stack import StackError, StackSpec
from loadtests import accounts_file, scenarios, thresholds
from loadtests.ops import Ops, OpsError
from loadtests.pacing import RECOVERY_MAX_PER_MINUTE
from loadtests.prepare import CLIENT_ID, POST_LOGOUT_URI, REDIRECT_URI, Prepared, PrepareError, prepare, remote
from loadtests.run_settings import CLIENT_SECRET_ENV, IMAP_MAX_PER_SECOND
from loginsvc import conf

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
CAPACITY_START_RATE = 5.0
MAX_USERS = 5000
MAX_DURATION = 86400.0
GRACE_SECONDS = 180.0      # beyond the planned duration (and the mail grace) before the run is stopped as hung
RECOVERY_PER_MINUTE = 4.0  # the recovery journey's default: 240 codes an hour, what 50 accounts carry at 5/h each
MAX_MAIL_GRACE = 600.0
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")   # sync_products' rule (loginsvc/sso/products.py), Django-free
REMOTE_NEEDS_FILE = ("--accounts: with --remote give a FILE of existing accounts (email:password lines); nothing "
                     "is created on a remote target")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def bad(message: str) -> NoReturn:
    print(f"python -m loadtests run: {message}", file=sys.stderr)
    sys.exit(2)


def _number(kind: type, text: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number, got {text!r}") from None


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = _number(kind, text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
        return value
    return parse


def _up_to(highest: float) -> Callable[[str], float]:
    """A rate from 0 (off) to `highest`: --recovery-per-minute, --imap-per-second."""
    def parse(text: str) -> float:
        value = _number(float, text)
        if not 0 <= value <= highest:
            raise argparse.ArgumentTypeError(f"must be 0 (off) to {highest:g}, got {text!r}")
        return value
    return parse


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port 1-65535, got {text!r}")
    return int(text)


def _accounts(text: str) -> int | Path:
    """--accounts: a number of accounts to create, or a FILE of existing ones (a file named like a number: ./50)."""
    if text.isdigit():
        return int(_positive(int)(text))
    return Path(text)


def build_parser() -> Parser:
    parser = Parser(prog="python -m loadtests", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    run = sub.add_parser("run", help="run one scenario headless and write its reports")
    run.add_argument("--scenario", required=True, choices=sorted(scenarios.SCENARIOS), metavar="NAME",
                     help=f"one of {', '.join(sorted(scenarios.SCENARIOS))}")
    run.add_argument("--duration", type=_positive(float), help="seconds (default per scenario, 60-120)")
    run.add_argument("--users", type=_positive(int), default=20, help="users (open model: concurrency), default 20")
    run.add_argument("--rate", type=_positive(float), help="open model: tasks per second in all (capacity: the first step)")
    run.add_argument("--slo", action="append", default=[], metavar="EXPR", help="e.g. p99<800, green:p99<blue:p99*1.2")
    run.add_argument("--out", type=Path, help="report folder (default reports/<timestamp>/)")
    run.add_argument("--host", default="http://127.0.0.1:8000", help="the product (default http://127.0.0.1:8000)")
    run.add_argument("--processes", type=_positive(int), default=1, help="Locust worker processes (default 1)")
    run.add_argument("--admin", help="the router's admin API (default: the stack's, http://127.0.0.1:8001)")
    run.add_argument("--var-dir", type=Path, default=None, help="the stack's state (default LOGINSVC_VAR_DIR or var/)")
    run.add_argument("--kill", default="", metavar="CLUSTER", help="failover: the cluster to kill (default: the stable one)")
    run.add_argument("--accounts", type=_accounts, default=50, metavar="N|FILE",
                     help="load-test accounts to create and spread over (default 50), or a FILE of existing ones, "
                          "one email:password a line (owner-only)")
    run.add_argument("--remote", action="store_true",
                     help="the target is not this machine's stack (staging): create nothing, take the accounts from "
                          "--accounts FILE and the product's secret from LOADTEST_CLIENT_SECRET")
    run.add_argument("--client-id", help=f"--remote: the product registered on the target (default {CLIENT_ID})")
    run.add_argument("--recovery-per-minute", type=_up_to(RECOVERY_MAX_PER_MINUTE), default=None, metavar="N",
                     help=f"the password recovery journey: codes asked per minute, each timed to its mail in the "
                          f"stack's Maildir (default {RECOVERY_PER_MINUTE:g}; 0: off; off with --remote)")
    run.add_argument("--mail-grace", type=_positive(float), default=60.0, metavar="SECONDS",
                     help="after the run, wait at most this long for recovery mail still due (default 60)")
    run.add_argument("--imap-per-second", type=_up_to(IMAP_MAX_PER_SECOND), default=0.0, metavar="N",
                     help="the IMAP journey: app-password logins per second to the stack's Dovecot (default 0: off)")
    run.add_argument("--imap-port", type=_port, default=None, metavar="PORT",
                     help=f"with --imap-per-second: Dovecot's IMAP port on 127.0.0.1 (default {IMAP_PORT})")
    return parser


def loopback(origin: str) -> bool:
    """Whether the URL's host is this machine by its name alone (no DNS lookup: that would be a request too)."""
    host = urlsplit(origin).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_target(args: argparse.Namespace) -> None:
    """Where the run goes and what it may create there; checked before any request."""
    if args.remote:
        if not isinstance(args.accounts, Path):
            bad(REMOTE_NEEDS_FILE)
        if args.scenario == "failover":
            bad("--remote: the failover scenario kills a cluster of this machine's stack")
        if args.client_id is not None and not CLIENT_ID_RE.fullmatch(args.client_id):
            bad(f"--client-id: 1 to 100 of A-Z a-z 0-9 . _ - (got {args.client_id!r})")
        if not os.environ.get(CLIENT_SECRET_ENV):
            bad(f"--remote: {CLIENT_SECRET_ENV} is not set (the secret of the product registered on the target)")
        if args.recovery_per_minute:
            bad("--recovery-per-minute: with --remote the mail goes to the target's own mail server, which this run "
                "cannot read")
        if args.imap_per_second:
            bad("--imap-per-second: only against this machine's stack (its Dovecot on 127.0.0.1), not with --remote")
        if args.admin and not (os.environ.get("CANARY_ADMIN_TOKEN") or os.environ.get("CANARY_ADMIN_TOKEN_FILE")):
            bad("--admin: with --remote the router's token comes from CANARY_ADMIN_TOKEN or "
                "CANARY_ADMIN_TOKEN_FILE, never this machine's stack")
    else:
        for option, origin in (("--host", args.host), ("--admin", args.admin)):
            if origin and not loopback(origin):
                bad(f"{option}: {origin} is not this machine; the run creates accounts on its target, so only "
                    "127.0.0.1, [::1] or localhost (a staging stack: --remote with --accounts FILE)")
        if args.client_id:
            bad("--client-id: only with --remote (a local run registers its own product)")
        if os.environ.get("DATABASE_URL"):
            bad("DATABASE_URL is set: a run prepares only the stack's own database under --var-dir, never one "
                "named by this shell; unset it (a stack on PostgreSQL: --remote with --accounts FILE)")
    if isinstance(args.accounts, Path):
        try:
            accounts_file.read(args.accounts)
        except accounts_file.AccountsFileError as exc:
            bad(f"--accounts: {exc}")


def validate(args: argparse.Namespace) -> None:
    """Everything that can be checked before anything runs; a problem is one line and exit 2."""
    try:
        thresholds.parse_all(args.slo)
    except thresholds.SloError as exc:
        bad(f"--slo {exc}")
    host = urlsplit(args.host)
    if host.scheme not in ("http", "https") or not host.hostname or host.path not in ("", "/"):
        bad(f"--host: expected an origin like http://127.0.0.1:8000, got {args.host!r}")
    if args.users > MAX_USERS:
        bad(f"--users: at most {MAX_USERS} per run (got {args.users}); use workers on more machines")
    if args.duration is not None and args.duration > MAX_DURATION:
        bad(f"--duration: at most {MAX_DURATION:.0f} s (got {args.duration:g})")
    if args.processes > max(1, (os.cpu_count() or 1) * 4):
        bad(f"--processes: {args.processes} is more than 4 per CPU of this machine")
    if args.mail_grace > MAX_MAIL_GRACE:
        bad(f"--mail-grace: at most {MAX_MAIL_GRACE:g} s (got {args.mail_grace:g})")
    if args.imap_port is not None and not args.imap_per_second:
        bad("--imap-port: only with --imap-per-second")
    if args.kill and args.scenario != "failover":
        bad("--kill: only the failover scenario kills a cluster")
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        bad(f"--out: {args.out} exists and is not empty (reports are never overwritten)")
    if args.admin is not None and not urlsplit(args.admin).hostname:
        bad(f"--admin: expected an origin like http://127.0.0.1:8001, got {args.admin!r}")
    validate_target(args)


def reachable(host: str) -> str | None:
    try:
        with urllib.request.urlopen(host.rstrip("/") + "/login/", timeout=5) as response:
            response.read(1)
        return None
    except urllib.error.HTTPError as exc:
        return None if exc.code < 500 else f"it answers {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def recovery_rate(args: argparse.Namespace) -> float:
    """The recovery journey's asks per minute: as given, else the default on this machine's stack, else none (a
    remote target's mail cannot be read here)."""
    if args.recovery_per_minute is not None:
        return float(args.recovery_per_minute)
    return 0.0 if args.remote else RECOVERY_PER_MINUTE


def locust_command(args: argparse.Namespace, out: Path, duration: float, rate: float | None, admin: str,
                   var_dir: Path, accounts: list[str]) -> list[str]:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", args.host.rstrip("/"),
               "--only-summary", "--html", str(out / "locust.html"), "--csv", str(out / "locust"),
               "--logfile", str(out / "locust.log"), "--loglevel", "INFO", "--stop-timeout", "5",
               "--lt-scenario", args.scenario, "--lt-duration", str(duration), "--lt-users", str(args.users),
               "--lt-rate", str(rate or 0), "--lt-out", str(out), "--lt-admin", admin, "--lt-var-dir", str(var_dir),
               "--lt-kill", args.kill, *accounts, "--lt-client-id", args.client_id or CLIENT_ID,
               "--lt-redirect-uri", REDIRECT_URI, "--lt-post-logout-uri", POST_LOGOUT_URI,
               "--lt-recovery-per-minute", str(recovery_rate(args)), "--lt-mail-grace", str(args.mail_grace),
               "--lt-imap-per-second", str(args.imap_per_second), "--lt-imap-port", str(args.imap_port or IMAP_PORT)]
    for expression in args.slo:
        command += ["--lt-slo", expression]
    if args.processes > 1:
        command += ["--processes", str(args.processes)]
    return command


def stack_of(args: argparse.Namespace, var_dir: Path) -> StackSpec | None:
    """This machine's `make up` stack (its admin listener, Redis and manage.py's state); None for --remote."""
    if args.remote:
        return None
    try:
        return StackSpec.load(var_dir)
    except StackError as exc:
        bad(f"--var-dir: {exc}")


def prepared_on(spec: StackSpec | None, accounts: int | Path) -> Prepared:
    """The accounts and product on the stack; a remote target is taken as it is."""
    if spec is None:
        assert isinstance(accounts, Path), "validate_target refuses --remote without --accounts FILE"
        return remote(accounts)
    try:
        return prepare(spec, accounts)
    except PrepareError as exc:
        bad(str(exc))


def run(args: argparse.Namespace) -> int:
    validate(args)
    var_dir = (args.var_dir or conf.var_dir()).resolve()
    duration = args.duration or scenarios.DEFAULT_DURATION[args.scenario]
    rate = args.rate or (CAPACITY_START_RATE if args.scenario == "capacity" else None)
    problem = reachable(args.host)
    if problem:
        bad(f"--host: nothing usable at {args.host} ({problem}); start the stack with `make up`")
    spec = stack_of(args, var_dir)
    admin = args.admin or (spec.admin_url if spec else "")
    status = None
    if admin:
        try:
            status = Ops(admin, var_dir).status()
        except OpsError as exc:
            if args.scenario in scenarios.NEEDS_OPS:
                bad(f"--admin: the {args.scenario} scenario drives the router: {exc}")
            admin = ""
    elif args.scenario in scenarios.NEEDS_OPS:
        bad(f"--admin: the {args.scenario} scenario drives the router: give its admin API")
    if status is not None and args.kill and args.kill not in status["clusters"]:
        bad(f"--kill: no cluster {args.kill!r} (the router has {', '.join(sorted(status['clusters']))})")
    if recovery_rate(args) and spec is not None and not spec.maildir.is_dir():
        bad(f"--recovery-per-minute: no Maildir at {spec.maildir} to time the mail in (the stack's mail server makes "
            "it); 0 leaves the recovery journey out")
    if args.imap_per_second and not port_open(args.imap_port or IMAP_PORT):
        bad(f"--imap-per-second: nothing listens for IMAP at 127.0.0.1:{args.imap_port or IMAP_PORT} (`make up` runs "
            f"Dovecot when it is installed: apt-get install {PACKAGES})")
    prepared = prepared_on(spec, args.accounts)
    out = (args.out or ROOT / "reports" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = locust_command(args, out, duration, rate, admin, var_dir, prepared.accounts)
    print(f"{args.scenario}: {duration:g} s, {args.users} users"
          + (f", open model at {rate:g}/s" if rate else ", closed model")
          + (f", recovery codes at {recovery_rate(args):g}/min" if recovery_rate(args) else "")
          + (f", IMAP logins at {args.imap_per_second:g}/s" if args.imap_per_second else "")
          + f" against {args.host}; reports in {out}", flush=True)
    bound = duration + GRACE_SECONDS + (args.mail_grace if recovery_rate(args) else 0.0)
    with open(out / "locust-output.txt", "wb") as output:  # Locust's tables and errors; the progress line is ours
        try:
            locust = subprocess.run(command, cwd=ROOT, env=dict(os.environ, **prepared.env), stderr=output,
                                    timeout=bound)
        except subprocess.TimeoutExpired:
            print(f"the run did not end within {bound:.0f} s; stopped (see {out}/locust.log)", file=sys.stderr)
            return 1
    return finish(out, locust.returncode)


def finish(out: Path, returncode: int) -> int:
    """Print the summary table from summary.json; its exit code (the SLO gate) is the run's."""
    from loadtests import report

    try:
        result = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = []
        for name in ("locust-output.txt", "locust.log"):
            if (out / name).exists():
                tail += (out / name).read_text(errors="replace").splitlines()[-10:]
        print("the run wrote no summary (Locust exit %d); the end of its log:\n%s" % (returncode, "\n".join(tail)),
              file=sys.stderr)
        return 1
    print("\n".join(report.summary_lines(result)))
    print(f"\nreports: {out / 'report.html'}, {out / 'summary.json'}, {out / 'locust.html'}")
    return int(result["exit_code"])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)
