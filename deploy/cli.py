"""`python -m deploy status|kill|restart|scale|release|mail`: operate the running local stack, read its mail."""
from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import email.utils
import fcntl
import json
import os
import re
import sys
import time
import xmlrpc.client
from email.message import EmailMessage
from pathlib import Path
from typing import Iterator, NoReturn

from deploy import programs
from deploy.maildir import message_id, stored_at
from deploy.node import manage
from deploy.operations import Stack
from deploy.router_client import RouterError
from deploy.stack import StackError, StackSpec, maildir
from loginsvc import conf
from deploy.supervisor_rpc import NotRunning


class Parser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem, exit 2 (argparse's usage dump is noise here)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1 (got {value!r})")
    return int(value)


def build_parser() -> Parser:
    parser = Parser(prog="python -m deploy", description=__doc__)
    parser.add_argument("--var-dir", type=Path, default=None,
                        help="the stack's state directory (default: LOGINSVC_VAR_DIR or var/)")
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    status = sub.add_parser("status", help="every process: state, pid, uptime, restarts, health")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    kill = sub.add_parser("kill", help="chaos: SIGKILL a node, a whole cluster, redis, mail or router")
    kill.add_argument("target", metavar="TARGET")
    restart = sub.add_parser("restart", help="graceful restart (rolling for a cluster, each node drained first)")
    restart.add_argument("target", metavar="TARGET")
    scale = sub.add_parser("scale", help="add or remove nodes of a cluster")
    scale.add_argument("cluster", metavar="CLUSTER")
    scale.add_argument("count", metavar="N")
    release = sub.add_parser("release", help="rolling restart of one cluster with a new release tag")
    release.add_argument("cluster", metavar="CLUSTER")
    release.add_argument("version", metavar="VERSION")
    mail = sub.add_parser("mail", help="the local mail server's messages (var/mail/), latest last")
    mail.add_argument("-n", dest="count", type=positive, default=5, metavar="N", help="how many (default 5)")
    what = mail.add_mutually_exclusive_group()
    what.add_argument("--follow", action="store_true", help="then print new messages as they arrive, until Ctrl-C")
    what.add_argument("--failed", action="store_true",
                      help="the login service's failed outbox rows instead (manage.py mail_outbox --failed)")
    for verb in sub.choices.values():  # `python -m deploy VERB … --var-dir DIR` too
        verb.add_argument("--var-dir", type=Path, default=argparse.SUPPRESS, help="as before the verb")
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
    if args.cmd == "mail":  # reads files: works without a running stack
        return failed_mail(Path(var_dir)) if args.failed else show_mail(maildir(var_dir), args.count, args.follow)
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


# -- mail ----------------------------------------------------------------------------------------------------
POLL_SECONDS = 0.5
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # a message must not drive the terminal


def mail_files(box: Path) -> list[Path]:
    """The Maildir's messages (new/ and cur/), oldest first: in the order the server stored them (deploy/maildir.py)."""
    files = []
    for sub in ("new", "cur"):
        for path in (box / sub).glob("[!.]*"):
            try:
                files.append((stored_at(path), path.name, path))
            except FileNotFoundError:  # moved by a mail reader meanwhile
                pass
    return [path for _, _, path in sorted(files)]


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return f"(no text/plain part; {message.get_content_type()})"
    try:
        return part.get_content()
    except (LookupError, ValueError):  # an unknown or lying charset
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def format_message(path: Path) -> str:
    with path.open("rb") as f:
        message = email.message_from_binary_file(f, _class=EmailMessage, policy=email.policy.default)
    headers = {name: str(message.get(name, "")) for name in ("Date", "From", "To", "Subject")}
    headers["Date"] = headers["Date"] or email.utils.formatdate(path.stat().st_mtime, localtime=True)  # delivery
    lines = [f"──── {path.name}"]
    lines += [f"{name}: {' '.join(CONTROL.sub('?', value).split())}" for name, value in headers.items()]
    return "\n".join(lines) + "\n\n" + CONTROL.sub("?", plain_text(message)).rstrip("\n") + "\n"


def print_messages(paths: list[Path], seen: set[str]) -> None:
    for path in paths:
        try:
            print(format_message(path), flush=True)
        except FileNotFoundError:   # moved to cur/ meanwhile: printed on the next round
            continue
        seen.add(message_id(path.name))


def show_mail(box: Path, count: int, follow: bool) -> int:
    """The latest `count` messages, oldest first; with `follow`, then every new one until Ctrl-C."""
    # A subject that a non-UTF-8 terminal cannot show gets '?', not a traceback.
    sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    files = mail_files(box)
    if not files:
        print(f"no mail yet in {box}/" if box.is_dir() else f"no mail yet: {box}/ does not exist", flush=True)
    seen = {message_id(p.name) for p in files}
    print_messages(files[-count:], seen)
    if not follow:
        return 0
    print("waiting for new mail… (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(POLL_SECONDS)
            print_messages([p for p in mail_files(box) if message_id(p.name) not in seen], seen)
    except KeyboardInterrupt:
        return 0


def failed_mail(var_dir: Path) -> int:
    """`manage.py mail_outbox --failed` with the stack's environment (else this var dir's defaults); its
    output and exit code pass through."""
    try:
        env = programs.stack_env(StackSpec.load(var_dir))
    except StackError:
        env = dict(os.environ, LOGINSVC_VAR_DIR=str(var_dir.resolve()))
    result = manage(env, "mail_outbox", "--failed", check=False)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


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
