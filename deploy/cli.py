"""`python -m deploy status|kill|restart|scale|release`: operate the running local stack."""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import sys
import xmlrpc.client
from pathlib import Path
from typing import Iterator, NoReturn

from deploy.operations import Stack
from deploy.router_client import RouterError
from deploy.stack import StackError, StackSpec
from loginsvc import conf
from deploy.supervisor_rpc import NotRunning


class Parser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem, exit 2 (argparse's usage dump is noise here)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> Parser:
    parser = Parser(prog="python -m deploy", description=__doc__)
    parser.add_argument("--var-dir", type=Path, default=None,
                        help="the stack's state directory (default: LOGINSVC_VAR_DIR or var/)")
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    status = sub.add_parser("status", help="every process: state, pid, uptime, restarts, health")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    kill = sub.add_parser("kill", help="chaos: SIGKILL a node, a whole cluster, redis or router")
    kill.add_argument("target", metavar="TARGET")
    restart = sub.add_parser("restart", help="graceful restart (rolling for a cluster, each node drained first)")
    restart.add_argument("target", metavar="TARGET")
    scale = sub.add_parser("scale", help="add or remove nodes of a cluster")
    scale.add_argument("cluster", metavar="CLUSTER")
    scale.add_argument("count", metavar="N")
    release = sub.add_parser("release", help="rolling restart of one cluster with a new release tag")
    release.add_argument("cluster", metavar="CLUSTER")
    release.add_argument("version", metavar="VERSION")
    return parser


def format_uptime(seconds: int) -> str:
    if not seconds:
        return "-"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def print_table(rows: list[dict]) -> None:
    header = ("NAME", "CLUSTER", "RELEASE", "ADDRESS", "STATE", "PID", "UPTIME", "RESTARTS", "HEALTH")
    table = [header] + [(r["name"], r["cluster"] or "-", r["release"] or "-", r["address"], r["state"],
                         str(r["pid"] or "-"), format_uptime(r["uptime"]), str(r["restarts"]), r["health"])
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


class Busy(Exception):
    """Another changing verb holds the stack's lock."""


@contextlib.contextmanager
def exclusive(var_dir: Path) -> Iterator[None]:
    """One changing verb at a time per stack: two would each save stack.json and lose the other's change."""
    path = var_dir / "stack" / ".lock"
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy("another `python -m deploy` command is changing this stack; try again when it ends") \
                from None
        yield


def run(args: argparse.Namespace) -> int:
    var_dir = args.var_dir or conf.var_dir()
    spec = StackSpec.load(var_dir)
    stack = Stack(spec, log=lambda message: print(message, flush=True))
    if args.cmd == "status":
        rows = stack.status()
        print(json.dumps(rows, indent=1)) if args.json else print_table(rows)
        return 0
    if args.cmd == "kill":  # chaos takes no lock: killing things in the middle of a release is a fair test
        for line in stack.kill(args.target):
            print(f"killed {line}")
        return 0
    with exclusive(Path(var_dir)):
        stack.spec = StackSpec.load(var_dir)   # as it is now that this command holds the lock
        return change(stack, args)


def change(stack: Stack, args: argparse.Namespace) -> int:
    if args.cmd == "restart":
        stack.restart(args.target)
    elif args.cmd == "scale":
        if not args.count.isdigit():
            raise StackError(f"N: expected a whole number of nodes (got {args.count!r})")
        stack.scale(args.cluster, int(args.count))
    elif args.cmd == "release":
        stack.release(args.cluster, args.version)
    print("done")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except StackError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    except (NotRunning, RouterError, TimeoutError, Busy, xmlrpc.client.Fault) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
