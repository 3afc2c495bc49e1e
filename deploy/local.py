"""`make up`: the whole twin-cluster stack in the foreground under supervisord.

Redis (unless REDIS_URL), a local SMTP server into var/mail/ (the nodes' EMAIL_URL unless set),
migrations and demo users, clusters blue and green (gunicorn nodes blue-1, blue-2, green-1, green-2,
each its own process group), the canary router on :8000 (blue stable, green canary at 12 %) with its
admin API on :8001. supervisord restarts whatever dies;
`python -m deploy …` operates the running stack. Ctrl-C (or SIGTERM) stops the router, then
the nodes, then Redis, and leaves nothing running.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Callable

from canary.config import secret
from deploy import dovecot_server, programs
from deploy.cli import Parser, print_table
from deploy.demo_products import SECRET_ENV as DEMO_SECRET_ENV, products_toml
from deploy.node import http_ok, manage, port_open, still_running
from deploy.operations import Stack, node_ready, wait_for
from deploy.router_client import RouterError
from deploy.stack import (CLUSTERS, DEFAULT_ADMIN, DEFAULT_CANARY_PERCENT, DEFAULT_DEMO_LISTEN, DEFAULT_LISTEN,
                          DEFAULT_MAIL_LISTEN, DEFAULT_NODE_PORT_BASE, DEFAULT_NODES, StackError, StackSpec, new_spec,
                          parse_address, port_free)
from deploy.supervisor_rpc import NotRunning, Supervisor
from loginsvc import conf
from sharedlib.files import create_once

READY_TIMEOUT = 60.0
# Owner-only files for everything the stack creates: var/ holds the SQLite database (password hashes,
# live session keys), the generated secret key and tokens, Redis's socket and logs.
PRIVATE_UMASK = 0o077


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = Parser(prog="python -m deploy.local", description=__doc__)
    parser.add_argument("--listen", default=env("DEPLOY_LISTEN", DEFAULT_LISTEN), help="router, HOST:PORT")
    parser.add_argument("--admin", default=env("DEPLOY_ADMIN", DEFAULT_ADMIN), help="router admin API, HOST:PORT")
    parser.add_argument("--node-port-base", default=env("DEPLOY_NODE_PORT_BASE", str(DEFAULT_NODE_PORT_BASE)),
                        help="first port for the gunicorn nodes (each takes the next free one)")
    parser.add_argument("--nodes", default=env("DEPLOY_NODES", str(DEFAULT_NODES)), help="nodes per cluster")
    parser.add_argument("--canary-percent", default=env("DEPLOY_CANARY_PERCENT", str(DEFAULT_CANARY_PERCENT)),
                        help="green's share of new browsers until ops ramp it (kept in the router's state)")
    parser.add_argument("--demo-listen", default=env("DEPLOY_DEMO_LISTEN", DEFAULT_DEMO_LISTEN),
                        help=f"the demo products, HOST:PORT (run only when {DEMO_SECRET_ENV} is set)")
    parser.add_argument("--mail-listen", default=env("DEPLOY_MAIL_LISTEN", DEFAULT_MAIL_LISTEN),
                        help="the local SMTP server the nodes send to (EMAIL_URL unless set), HOST:PORT, loopback only")
    parser.add_argument("--var-dir", type=Path, default=conf.var_dir())
    return parser.parse_args(argv)


def number(value: str, key: str, kind: type = int) -> float:
    try:
        return kind(value)
    except ValueError:
        raise StackError(f"{key}: expected a number (got {value!r})") from None


def build_spec(args: argparse.Namespace) -> StackSpec:
    return new_spec(args.var_dir, args.listen, args.admin, int(number(args.node_port_base, "--node-port-base")),
                    int(number(args.nodes, "--nodes")), number(args.canary_percent, "--canary-percent", float),
                    os.environ.get("REDIS_URL", ""), args.demo_listen, args.mail_listen)


def demo_enabled() -> bool:
    """The demo products (and their registration) only when their client secret is given."""
    return bool(os.environ.get(DEMO_SECRET_ENV))


MFA_DEMO_PRODUCTS = ("admin-portal",)


def demo_products_file(base_url: str) -> str:
    """The demo products' file, with `require_mfa = true` for admin-portal: the demo shows both kinds of
    product, webmail taking a password alone and the admin portal asking for a second factor."""
    return products_toml(base_url, DEMO_SECRET_ENV, require_mfa=MFA_DEMO_PRODUCTS)


def register_demo_products(spec: StackSpec, env: dict[str, str]) -> None:
    """webmail, admin-portal (second factor required), quarantine as confidential first-party clients
    (`manage.py sync_products`)."""
    path = spec.stack_dir / "demo-products.toml"
    programs.write_file(path, demo_products_file(spec.demo_url))
    run_step(env, "sync_products", str(path))


def run_step(env: dict[str, str], *step: str) -> None:
    result = manage(env, *step, check=False)
    sys.stdout.write(result.stdout)
    if result.returncode:
        sys.stderr.write(result.stderr)
        raise RuntimeError(f"set-up step failed: manage.py {' '.join(step)}")


def ensure_secrets(spec: StackSpec) -> None:
    """The admin token (unless CANARY_ADMIN_TOKEN is set) and the pin key, as 0600 files under var/."""
    for env_name, file_env, path in (("CANARY_ADMIN_TOKEN", "CANARY_ADMIN_TOKEN_FILE", "canary-admin-token"),
                                     ("CANARY_PIN_SECRET", "CANARY_PIN_SECRET_FILE", "canary-pin-secret")):
        secret.load_or_create_secret(env_name, file_env, str(spec.var / path))


def make_private(var: Path) -> None:
    """Set the owner-only umask (supervisord and every program inherit it), create var/ 0700, and take
    group/other access away from anything an earlier run (or an older version) left readable in it."""
    os.umask(PRIVATE_UMASK)
    var.mkdir(mode=0o700, parents=True, exist_ok=True)
    for directory, dirs, files in os.walk(var):  # does not follow symlinks
        for path in [directory, *(os.path.join(directory, name) for name in dirs + files)]:
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                os.chmod(path, stat.S_IMODE(mode) & 0o700)


def start_supervisord(spec: StackSpec, env: dict[str, str]) -> subprocess.Popen[bytes]:
    conf_path = programs.write_base(spec)
    (spec.stack_dir / "starts.json").unlink(missing_ok=True)
    log = open(spec.var / "log" / "supervisord.out", "ab")
    # Own session: the terminal's Ctrl-C reaches only us, and we stop things in order.
    process = subprocess.Popen([sys.executable, "-c", "from supervisor.supervisord import main; main()",
                                "-c", str(conf_path)], env=env, stdout=log, stderr=log, start_new_session=True)
    log.close()
    return process


def fatal_programs(supervisor: Supervisor) -> list[str]:
    return [i["name"] for i in supervisor.all_info() if i["statename"] in ("FATAL", "BACKOFF")]


def bring_up(stack: Stack, env: dict[str, str], process: subprocess.Popen[bytes], pids: set[int]) -> None:
    spec, supervisor, router = stack.spec, stack.supervisor, stack.router

    def alive() -> bool:
        still_running(process, f"supervisord (see {spec.var / 'log'})")
        return supervisor.ping()

    def started(check: Callable[[], bool]) -> Callable[[], bool]:
        """`check`, failing fast when a program crash-loops instead of waiting out the timeout."""
        def probe() -> bool:
            failing = fatal_programs(supervisor)
            if failing:
                raise RuntimeError(f"{', '.join(failing)} keeps crashing; see {spec.var / 'log'}/")
            pids.update(supervisor.pids())
            return check()
        return probe

    wait_for(alive, 15, "supervisord")
    if spec.embedded_redis:
        wait_for(started(stack.redis_ok), 15, "redis")
    wait_for(started(stack.mail_ok), 15, "mail server")
    for step in (("migrate", "--noinput", "-v", "0"), ("ensure_demo_users",)):
        run_step(env, *step)
    if demo_enabled():
        register_demo_products(spec, env)
    for node in spec.nodes:
        programs.write_node(spec, node)
    programs.write_router(spec)
    for node in spec.nodes:
        supervisor.add_program(node.name)
    for node in spec.nodes:
        wait_for(started(lambda: node_ready(node)), READY_TIMEOUT, f"{node.name}: /readyz")
    supervisor.add_program("router")  # after the nodes: its first health checks find them ready
    wait_for(started(lambda: http_ok(f"{spec.admin_url}/healthz")), READY_TIMEOUT, "router admin /healthz")
    # An external Redis may still hold node lists from an earlier run: this stack's nodes are the truth.
    for cluster in CLUSTERS:
        router.set_nodes(cluster, spec.router_nodes(cluster))
    wait_for(started(lambda: all(c["available"] for c in router.status()["clusters"].values())), READY_TIMEOUT,
             "both clusters available in the router")
    if demo_enabled():
        programs.write_demo(spec, env["LOGINSVC_OIDC_ISSUER"])
        supervisor.add_program("demo-products")  # after the router: products reach the provider through it
        wait_for(started(lambda: http_ok(f"{spec.demo_url}/healthz")), READY_TIMEOUT, "demo products /healthz")
    if dovecot_problem(spec) is None:
        start_dovecot(stack, env, started)
    wait_for(started(lambda: all(i["statename"] == "RUNNING" for i in supervisor.all_info())), READY_TIMEOUT,
             "every program RUNNING in supervisord")


MAIL_CLIENT_PRODUCT = """# The public product of native mail clients (docs/mail-clients.md): any loopback port, this path.
[[product]]
client_id = "mail-client"
name = "Mail app"
type = "public"
first_party = false
redirect_uris = ["http://127.0.0.1/callback", "http://[::1]/callback"]
"""


def dovecot_problem(spec: StackSpec) -> str | None:
    """Why `make up` runs no Dovecot (its packages missing, or root with var/ closed to its mail user), or None."""
    return dovecot_server.missing() or dovecot_server.unreachable(spec.var / "imap")


def start_dovecot(stack: Stack, env: dict[str, str], started: Callable[[Callable[[], bool]], Callable[[], bool]]) -> None:
    """The mail server's client (its secret made once under var/), the mail-client product, then Dovecot."""
    spec = stack.spec
    secret_file = programs.dovecot_secret_file(spec)
    create_once(secret_file, lambda: secrets.token_urlsafe(32) + "\n")
    run_step(env, "register_mail_server", "--secret-file", str(secret_file))
    products_file = spec.stack_dir / "mail-client.toml"
    programs.write_file(products_file, MAIL_CLIENT_PRODUCT)
    run_step(env, "sync_products", str(products_file))
    programs.write_dovecot(spec, conf.load(env)["MAIL_SERVER_CLIENT"])  # as the nodes read it
    stack.supervisor.add_program("dovecot")
    wait_for(started(lambda: port_open(dovecot_server.IMAP_PORT)), READY_TIMEOUT, "Dovecot's IMAP port")


def shut_down(stack: Stack, process: subprocess.Popen[bytes], pids: set[int]) -> None:
    """Router first (no new traffic), then every node at once, then the rest (Redis, mail, demo products,
    Dovecot, the restart counter) at once, then supervisord, which has nothing left to stop.

    supervisord's own shutdown stops one program group per turn of its loop, and a turn waits up to a
    second when nothing happens: about a second per program even for stopped ones. Removing the stopped
    groups first makes Ctrl-C take as long as the slowest program, not their count. Whatever fails on the
    way, the end is the same: every process group this stack started is gone."""
    spec, supervisor = stack.spec, stack.supervisor
    try:
        try:
            pids.update(supervisor.pids())
            supervisor.stop("router")
            stop_together(supervisor, [n.name for n in spec.nodes])
            groups = {i["name"]: i["group"] for i in supervisor.all_info()}
            stop_together(supervisor, list(groups))
            for group in set(groups.values()):
                supervisor.call("removeProcessGroup", group)
        except NotRunning:
            pass
        except Exception as exc:  # noqa: BLE001 - the fallback below still stops everything
            print(f"orderly stop failed ({exc}); stopping the rest", file=sys.stderr)
        supervisor.shutdown()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    finally:
        for pid in pids:  # anything left behind: supervisord made each program a process group
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if process.poll() is None:
            process.kill()


def stop_together(supervisor: Supervisor, names: list[str], timeout: float = 30) -> None:
    """Stop the programs `names` all at once (each within its own stopwaitsecs) and wait for the last."""
    for name in names:
        supervisor.stop(name, wait=False)
    for name in names:
        try:
            wait_for(lambda: supervisor.info(name)["statename"] in ("STOPPED", "EXITED", "FATAL"), timeout,
                     f"{name}: stopped")
        except xmlrpc.client.Fault:  # never added (start-up was interrupted)
            pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        spec = build_spec(args)
    except StackError as exc:
        print(f"deploy.local: {exc}", file=sys.stderr)
        return 2
    stack = Stack(spec)
    supervisor = stack.supervisor
    if supervisor.ping():
        print(f"a stack is already running under {spec.var} (see `python -m deploy status`)", file=sys.stderr)
        return 1
    addresses = [("--listen", spec.listen), ("--admin", spec.admin), ("--mail-listen", spec.mail_listen)]
    if dovecot_problem(spec) is None:
        addresses += [("Dovecot's IMAP", f"127.0.0.1:{dovecot_server.IMAP_PORT}"),
                      ("Dovecot's submission", f"127.0.0.1:{dovecot_server.SUBMISSION_PORT}")]
    if demo_enabled():
        addresses.append(("--demo-listen", spec.demo_listen))
    for option, address in addresses:
        host, port = parse_address(address, option)
        if not port_free(port, host.strip("[]")):
            print(f"{option}: {address} is already in use (another `make up`?)", file=sys.stderr)
            return 1
    make_private(spec.var)
    spec.save()
    ensure_secrets(spec)
    env = programs.stack_env(spec)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt  # also interrupts a start-up still in progress

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    started = time.monotonic()
    process = start_supervisord(spec, env)
    pids: set[int] = set()
    ready = False
    try:
        bring_up(stack, env, process, pids)
        ready = True
        print_summary(stack, time.monotonic() - started)
        while process.poll() is None:
            time.sleep(1.0)
            try:  # remembered, so that even a crashed supervisord leaves nothing running
                pids.update(supervisor.pids())
            except NotRunning:
                pass
        print(f"supervisord exited with {process.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0 if ready else 130
    except (RuntimeError, TimeoutError, NotRunning, RouterError, OSError, xmlrpc.client.Fault) as exc:
        print(f"stack failed to start: {exc}; logs are in {spec.var / 'log'}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping the stack…", file=sys.stderr, flush=True)
        shut_down(stack, process, pids)
        print("stopped", file=sys.stderr, flush=True)


def print_summary(stack: Stack, seconds: float) -> None:
    spec = stack.spec
    print(f"\nstack ready in {seconds:.1f}s\n"
          f"  login service   http://{spec.listen}/login/   (router: blue stable, green canary "
          f"{spec.canary_percent:g}%)\n"
          f"  ops dashboard   http://{spec.admin}/   (sign in with the admin token: "
          f"{'CANARY_ADMIN_TOKEN' if os.environ.get('CANARY_ADMIN_TOKEN') else spec.var / 'canary-admin-token'})\n"
          f"  router admin    http://{spec.admin}/api/status   metrics: http://{spec.admin}/metrics\n"
          f"  database        {'DATABASE_URL (external)' if os.environ.get('DATABASE_URL') else spec.var / 'db.sqlite3'}\n"
          f"  redis           {spec.effective_redis_url if spec.embedded_redis else 'REDIS_URL (external)'}\n"
          + (f"  demo products   {spec.demo_url}/   (webmail, admin-portal, quarantine)\n" if demo_enabled() else "")
          + f"  mail            {mail_line(spec)}\n"
          + f"  mail clients    {mail_clients_line(spec)}\n"
          f"  logs            {spec.var / 'log'}/\n"
          "  operate it      python -m deploy status | kill | restart | scale | release | mail;  "
          "python -m canary ramp 20\n")
    print_table(stack.status())
    print("\nCtrl-C stops everything.", flush=True)


def mail_clients_line(spec: StackSpec) -> str:
    """Where mail clients connect (Dovecot), or in one line why it is not running."""
    problem = dovecot_problem(spec)
    if problem:
        return f"no Dovecot: {problem}"
    return (f"IMAP 127.0.0.1:{dovecot_server.IMAP_PORT}, submission 127.0.0.1:{dovecot_server.SUBMISSION_PORT} "
            f"(app passwords from /account/app-passwords/, or OAuth as client mail-client); mailboxes "
            f"{spec.var / 'imap'}/")


def mail_line(spec: StackSpec) -> str:
    """Where the nodes' mail goes: the local server's Maildir, or the operator's EMAIL_URL (never printed:
    it may hold a password)."""
    local = f"{spec.mail_url} → {spec.maildir / 'new'}/ (python -m deploy mail)"
    return f"EMAIL_URL (external); local server {local}" if os.environ.get("EMAIL_URL") else local


if __name__ == "__main__":
    sys.exit(main())
