"""Before a run: the load-test accounts and OAuth product, made with the service's own management commands on the stack's state.

Nothing else needs preparing on a `make up` stack: the password and client secret are generated once
into var/loadtest/ (0600) and given to the commands and to Locust through the environment, never on a
command line. One account in five gets an authenticator app with a secret derived from the password
(ensure_load_users --mfa, loginsvc/accounts/load_users.py), for the MFA journey. With DEMO_PASSWORD set,
demo@example.test is used instead of creating any accounts (demo2 has a second factor); with
`--accounts FILE`, the file's accounts (loadtests/accounts_file.py), and none are created either.

`manage.py` gets an environment made from the stack's spec alone (manage_env), nothing of the caller's:
a DATABASE_URL or LOGINSVC_MODE in the shell that runs the suites (a production one, say) can never send
these commands anywhere but the `make up` stack's own database under its var/. A remote target
(`--remote`, a staging stack) is not prepared at all (remote()).
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from deploy.node import manage
from deploy.stack import StackSpec
from loadtests.run_settings import CLIENT_SECRET_ENV, PASSWORD_ENV, mfa_count
from sharedlib.files import create_once
from loginsvc.accounts import load_users

CLIENT_ID = load_users.CLIENT_ID
REDIRECT_URI = "http://127.0.0.1:9/loadtest/callback"      # never contacted: the run only reads the code
POST_LOGOUT_URI = "http://127.0.0.1:9/loadtest/"
ACCOUNT_PREFIX = load_users.DEFAULT_PREFIX


class PrepareError(Exception):
    """A management command failed: one line."""


@dataclass(frozen=True)
class Prepared:
    accounts: list[str]            # Locust's options naming the accounts: --lt-accounts PREFIX:COUNT --lt-mfa M,
                                   # --lt-accounts demo, or --lt-accounts-file
    env: dict[str, str]            # the secrets, for Locust's environment


def product_toml() -> str:
    """The load suites' product file (`manage.py sync_products`); a remote target's operators register one like
    it under a client id of their own (docs/loadtests.md)."""
    return "\n".join(["# Written by `python -m loadtests run` (loadtests/prepare.py): the load suites' product.",
                      "[[product]]", f'client_id = "{CLIENT_ID}"', 'name = "Load tests"', 'type = "confidential"',
                      "first_party = true", f'redirect_uris = ["{REDIRECT_URI}"]',
                      f'post_logout_redirect_uris = ["{POST_LOGOUT_URI}"]', f'secret_env = "{CLIENT_SECRET_ENV}"', ""])


def manage_env(spec: StackSpec, **secret_values: str) -> dict[str, str]:
    """All that `manage.py` gets: where the stack keeps its state, from its spec, and the secrets it needs.

    Local mode and the SQLite database under the stack's var/, as `make up` runs its own set-up steps;
    no PATH or HOME is needed (the interpreter is named by its full path)."""
    return {"DJANGO_SETTINGS_MODULE": "loginsvc.settings", "LOGINSVC_MODE": "local", "LOGINSVC_VAR_DIR": spec.var_dir,
            "REDIS_URL": spec.effective_redis_url, "LOGINSVC_OIDC_ISSUER": f"http://{spec.listen}", **secret_values}


def _run(env: dict[str, str], *args: str) -> str:
    result = manage(env, *args, check=False)
    if result.returncode:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PrepareError(f"manage.py {args[0]} failed: {last[0]}")
    return result.stdout.strip()


def prepare(spec: StackSpec, accounts: int | Path) -> Prepared:
    """Register the product and create (or update) `accounts` accounts on the stack of `spec` (none for an
    accounts file); idempotent."""
    folder = spec.var / "loadtest"
    client_secret = create_once(folder / "client-secret", lambda: secrets.token_urlsafe(32)).strip()
    product_file = folder / "products.toml"   # folder: 0700, made with the secret above
    if not product_file.exists() or product_file.read_text(encoding="utf-8") != product_toml():
        product_file.write_text(product_toml(), encoding="utf-8")
    _run(manage_env(spec, **{CLIENT_SECRET_ENV: client_secret}), "sync_products", str(product_file))
    if isinstance(accounts, Path):
        return Prepared(["--lt-accounts-file", str(accounts.resolve())], {CLIENT_SECRET_ENV: client_secret})
    demo = os.environ.get("DEMO_PASSWORD", "")
    password = demo or create_once(folder / "password", lambda: secrets.token_urlsafe(24)).strip()
    env = {PASSWORD_ENV: password, CLIENT_SECRET_ENV: client_secret}
    if demo:
        return Prepared(["--lt-accounts", "demo"], env)
    mfa = str(mfa_count(accounts))
    _run(manage_env(spec, **{PASSWORD_ENV: password}), "ensure_load_users", "--count", str(accounts),
         "--prefix", ACCOUNT_PREFIX, "--mfa", mfa)
    return Prepared(["--lt-accounts", f"{ACCOUNT_PREFIX}:{accounts}", "--lt-mfa", mfa], env)


def remote(accounts: Path) -> Prepared:
    """A remote target (`--remote`): nothing is created there. The accounts come from the file; the product is
    the one its operators registered (product_toml with their client id), its secret in LOADTEST_CLIENT_SECRET."""
    return Prepared(["--lt-accounts-file", str(accounts.resolve())], {})
