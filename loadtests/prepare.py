"""Before a run: the load-test accounts and OAuth product, made with the service's own management commands on the stack's state.

Nothing else needs preparing on a `make up` stack: the password and client secret are generated once
into var/loadtest/ (0600) and given to the commands and to Locust through the environment, never on a
command line. With DEMO_PASSWORD set, the demo accounts are used instead of creating any.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from deploy.local import stack_env
from deploy.node import manage
from deploy.stack import StackSpec
from loadtests.config import CLIENT_SECRET_ENV, PASSWORD_ENV
from loginsvc import files

CLIENT_ID = "loadtest"
REDIRECT_URI = "http://127.0.0.1:9/loadtest/callback"      # never contacted: the run only reads the code
POST_LOGOUT_URI = "http://127.0.0.1:9/loadtest/"
ACCOUNT_PREFIX = "loadtest"


class PrepareError(Exception):
    """A management command failed: one line."""


@dataclass(frozen=True)
class Prepared:
    accounts: str                  # --lt-accounts: PREFIX:COUNT or demo
    env: dict[str, str]            # the secrets, for Locust's environment


def product_toml() -> str:
    return "\n".join(["# Written by `python -m loadtests run` (loadtests/prepare.py): the load suites' product.",
                      "[[product]]", f'client_id = "{CLIENT_ID}"', 'name = "Load tests"', 'type = "confidential"',
                      "first_party = true", f'redirect_uris = ["{REDIRECT_URI}"]',
                      f'post_logout_redirect_uris = ["{POST_LOGOUT_URI}"]', f'secret_env = "{CLIENT_SECRET_ENV}"', ""])


def _run(env: dict[str, str], *args: str) -> str:
    result = manage(env, *args, check=False)
    if result.returncode:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PrepareError(f"manage.py {args[0]} failed: {last[0]}")
    return result.stdout.strip()


def prepare(spec: StackSpec, accounts: int) -> Prepared:
    """Create (or update) the accounts and the product on the stack of `spec`; idempotent."""
    folder = spec.var / "loadtest"
    client_secret = files.create_once(folder / "client-secret", lambda: secrets.token_urlsafe(32)).strip()
    demo = os.environ.get("DEMO_PASSWORD", "")
    password = demo or files.create_once(folder / "password", lambda: secrets.token_urlsafe(24)).strip()
    env = {**stack_env(spec), PASSWORD_ENV: password, CLIENT_SECRET_ENV: client_secret}   # as `make up` runs manage.py
    product_file = folder / "products.toml"   # folder: 0700, made with the secrets above
    if not product_file.exists() or product_file.read_text(encoding="utf-8") != product_toml():
        product_file.write_text(product_toml(), encoding="utf-8")
    _run(env, "sync_products", str(product_file))
    if not demo:
        _run(env, "ensure_load_users", "--count", str(accounts), "--prefix", ACCOUNT_PREFIX)
    return Prepared("demo" if demo else f"{ACCOUNT_PREFIX}:{accounts}",
                    {PASSWORD_ENV: password, CLIENT_SECRET_ENV: client_secret})
