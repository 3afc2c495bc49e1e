"""`make up`: the embedded stack in the foreground — Redis (unless REDIS_URL), migrations, one gunicorn node.

Ctrl-C (SIGINT) or SIGTERM stops gunicorn gracefully, then Redis, and leaves nothing running.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from deploy.node import Node, manage
from deploy.redis_server import RedisServer
from loginsvc import conf

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOGINSVC_PORT", "8000")))
    parser.add_argument("--var-dir", type=Path, default=conf.var_dir())
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port: must be between 1 and 65535 (got {args.port})")
    return args


def run_manage(env: dict[str, str], *args: str) -> None:
    result = manage(env, *args, check=False)
    sys.stdout.write(result.stdout)
    if result.returncode:
        sys.stderr.write(result.stderr)
        raise subprocess.CalledProcessError(result.returncode, ["manage.py", *args])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    var_dir = args.var_dir.resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LOGINSVC_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="loginsvc.settings")
    env.setdefault("LOGINSVC_NODE", socket.gethostname())
    env["PROMETHEUS_MULTIPROC_DIR"] = str(var_dir / "metrics" / env["LOGINSVC_NODE"])
    env["LOGINSVC_BIND"] = f"{args.host}:{args.port}"

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    redis_server = None
    node: Node | None = None
    try:
        if not env.get("REDIS_URL"):
            redis_server = RedisServer(var_dir / "redis", unix_socket=var_dir / "redis.sock").start()
            env["REDIS_URL"] = redis_server.url
        run_manage(env, "migrate", "--noinput", "-v", "0")
        run_manage(env, "ensure_demo_users")
        node = Node(env, env.get("LOGINSVC_CLUSTER", "local"), env["LOGINSVC_NODE"], args.port, args.host)
        try:
            node.start()
        except RuntimeError as exc:
            print(f"login service failed to start ({exc}); see the messages above", file=sys.stderr)
            return 1
        print(
            f"login service  http://{args.host}:{args.port}/login/   (node {env['LOGINSVC_NODE']})\n"
            f"redis          {env['REDIS_URL'] if redis_server else 'REDIS_URL (external)'}\n"
            f"database       {'DATABASE_URL (external)' if env.get('DATABASE_URL') else var_dir / 'db.sqlite3'}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        while not stopping and node.running():
            time.sleep(0.2)
        return 0 if stopping else 1
    except subprocess.CalledProcessError as exc:
        print(f"set-up step failed: {' '.join(exc.cmd)}", file=sys.stderr)
        return 1
    finally:
        if node:
            node.stop()
        if redis_server:
            redis_server.stop()


if __name__ == "__main__":
    sys.exit(main())
