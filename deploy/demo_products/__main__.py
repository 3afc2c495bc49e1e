"""`python -m deploy.demo_products --listen HOST:PORT --issuer URL`: the demo products under gunicorn."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gunicorn.app.base import BaseApplication

from deploy.cli import Parser
from deploy.demo_products import DEFAULT_LISTEN, SECRET_ENV
from deploy.stack import StackError, parse_address

# Sessions live in this process's memory: one worker, a few threads.
THREADS = 4
# The query string is left out of the access log: a callback's holds an authorization code.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m deploy.demo_products", description=__doc__)
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT; the public URL is http://HOST:PORT")
    parser.add_argument("--issuer", required=True, help="the login service's issuer (the router's origin)")
    parser.add_argument("--sessions-file", type=Path, default=None,
                        help="keep signed-in sessions in this 0600 file too, so a restart keeps them")
    args = parser.parse_args(argv)
    try:
        parse_address(args.listen, "--listen")
    except StackError as exc:
        parser.error(str(exc))
    issuer = urlsplit(args.issuer)
    if issuer.scheme not in ("http", "https") or not issuer.hostname or issuer.query or issuer.fragment:
        parser.error(f"--issuer: expected an http(s) URL without query or fragment (got {args.issuer!r})")
    args.issuer = args.issuer.rstrip("/")
    if not os.environ.get(SECRET_ENV):
        parser.error(f"{SECRET_ENV}: not set (the products' client secret comes from the environment)")
    return args


class Server(BaseApplication):
    """gunicorn with its options given here, not read from a config file or the command line."""

    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self.application, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.application


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s demo-products %(levelname)s %(message)s")
    from deploy.demo_products.app import DemoProducts  # after the argument checks: Authlib is slower to import
    from deploy.demo_products.sessions import SessionStore

    app = DemoProducts(args.issuer, f"http://{args.listen}", os.environ[SECRET_ENV], SessionStore(args.sessions_file))
    logging.getLogger("demo_products").info("demo products on http://%s/ (issuer %s)", args.listen, args.issuer)
    Server(app, {"bind": args.listen, "workers": 1, "threads": THREADS, "worker_class": "gthread",
                 "accesslog": "-", "access_log_format": ACCESS_LOG_FORMAT, "graceful_timeout": 5,
                 "timeout": 60, "proc_name": "demo-products", "control_socket_disable": True}).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
