"""Instructions per sign-in, counted by callgrind: the password alone, and the password plus an app code.

The machine-independent form of the second factor's budget (it must add less than 10 % to a sign-in's
server time): req/s on a shared 2-core VM swing by a third, instruction counts do not. A child
process signs in N times through the service's whole WSGI stack in process (`loginsvc.wsgi`: both
fast paths, every middleware, the real Redis of the bench for the brute-force counters and the
session cache), under callgrind, for two values of N; the difference divided by the extra sign-ins
is the cost of one, start-up cancelled out. Each sign-in takes an account of its own (a TOTP code
works once per account), so the accounts are made first (`--child prepare`, without valgrind).
Counted: the service's work and the few lines that build each request; not Redis's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path
from collections.abc import Callable
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a password for the instruction count"
SMALL, LARGE, WARM = 2, 6, 2
ACCOUNTS = 2 * (SMALL + LARGE + 2 * WARM)
CSRF = "instructionscsrftoken0123456789a"  # any 32 letters and digits: the double-submit pair


def _env(var: Path, redis_url: str) -> dict[str, str]:
    return dict(os.environ, DJANGO_SETTINGS_MODULE="loginsvc.settings", LOGINSVC_VAR_DIR=str(var),
                REDIS_URL=redis_url, LOGINSVC_ACCESS_LOG="0", PYTHONHASHSEED="0")


def _command(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", *args]


def per_sign_in(redis_url: str) -> dict[str, int]:
    """Instructions per sign-in of each kind, in a fresh database."""
    from loadtests.bench.hot_path import callgrind_total

    var = Path(tempfile.mkdtemp(prefix="bench-mfa-instructions-"))
    env = _env(var, redis_url)
    prepared = subprocess.run(_command("prepare"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if prepared.returncode:
        raise RuntimeError(f"preparing the accounts: {prepared.stderr[-800:]}")
    counts, offset = {}, 0
    for kind in ("password", "password_totp"):
        totals = []
        for n in (SMALL, LARGE):
            totals.append(callgrind_total(_command("serve", kind, str(n), str(offset)), env, ROOT))
            offset += n + WARM
        counts[kind] = (totals[1] - totals[0]) // (LARGE - SMALL)
    return counts


def email_of(kind: str, index: int) -> str:
    """Bench account `index` of `kind` ("password": the password alone; "password_totp": with an app)."""
    return f"{kind}-{index:05d}@bench.example.test"


def make_accounts(password: str, count: int) -> dict[str, str]:
    """`count` accounts of each kind sharing one Argon2 hash (setting up stays quick), the second kind
    with a confirmed authenticator app: email -> its secret. Run in a process with Django set up."""
    import pyotp
    from django.contrib.auth.hashers import make_password

    from loginsvc.accounts.models import User
    from loginsvc.mfa import totp

    hashed = make_password(password)
    User.objects.bulk_create([User(email=email_of(kind, i), password=hashed)
                              for kind in ("password", "password_totp") for i in range(count)])
    return {user.email: totp.secret_of(totp.enrol_confirmed(user, pyotp.random_base32(32)))
            for user in User.objects.filter(email__startswith="password_totp-")}


def _prepare() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", "-v", "0")
    secrets = make_accounts(PASSWORD, ACCOUNTS)
    (Path(os.environ["LOGINSVC_VAR_DIR"]) / "totp-secrets.json").write_text(json.dumps(secrets))


def _serve(kind: str, n: int, offset: int) -> None:
    """WARM + n sign-ins of `kind` on accounts offset…, each answered as a sign-in."""
    from loginsvc.wsgi import application
    import pyotp

    secrets = json.loads((Path(os.environ["LOGINSVC_VAR_DIR"]) / "totp-secrets.json").read_text())
    statuses: list[str] = []
    cookies: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None, /) -> Callable[[bytes], object]:
        statuses.append(status)
        for name, value in headers:
            if name.lower() == "set-cookie" and value.strip().startswith("loginsvc_sid="):
                cookies["loginsvc_sid"] = value.strip().split("=", 1)[1].split(";", 1)[0]
        return lambda data: None  # WSGI's write(): unused by Django

    def post(path: str, body: dict[str, str]) -> dict[str, Any]:
        raw = json.dumps(body).encode()
        cookie = "; ".join([f"csrftoken={CSRF}", *(f"{k}={v}" for k, v in cookies.items())])
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
                   "HTTP_HOST": "127.0.0.1:8000", "REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1",
                   "SCRIPT_NAME": "", "QUERY_STRING": "", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
                   "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(raw)), "wsgi.input": BytesIO(raw),
                   "HTTP_COOKIE": cookie, "HTTP_X_CSRFTOKEN": CSRF}
        return json.loads(b"".join(application(environ, start_response)))

    for index in range(offset, offset + WARM + n):
        cookies.clear()
        email = email_of(kind, index)
        answer = post("/api/login", {"username": email, "password": PASSWORD})
        if kind == "password_totp":
            if not answer.get("mfa_required"):
                raise SystemExit(f"{email}: expected the second step, got {answer}")
            answer = post("/api/login/mfa", {"method": "totp", "code": pyotp.TOTP(secrets[email]).at(time.time())})
        if answer.get("authenticated") is not True:
            raise SystemExit(f"{email}: not signed in: {answer}")
    if not all(status.startswith("200") for status in statuses):
        raise SystemExit(f"not every answer was a 200: {sorted(set(statuses))}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs="+", required=True, help="prepare | serve KIND N OFFSET")
    args = parser.parse_args(argv)
    if args.child[0] == "prepare":
        _prepare()
    else:
        _serve(args.child[1], int(args.child[2]), int(args.child[3]))


if __name__ == "__main__":
    main()
