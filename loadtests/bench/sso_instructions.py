"""Instructions per SSO request, counted by callgrind: userinfo and introspection on the fast path, and refresh grants.

Machine-independent, unlike req/s on a shared VM: the figure that says whether a check added to these
endpoints stays within its budget, and what a refresh grant costs the service's CPU. `python -m loadtests.bench --only sso_instructions` (part of
`make bench`; with BENCH_SSO_BEFORE=<git ref>, the code at that ref too, side by side).

Each tree gets a fresh SQLite database with a user, a confidential product, an access token and a
refresh-token family of a live sign-in (`--child prepare`, without valgrind). Then a child process
sends N requests through fast_token.FastTokenApp in process (`--child serve`), under callgrind, for
two values of N (a refresh grant passes through it to Django's whole stack, each request with the
refresh token the previous one was given, as a product rotates its tokens): the
difference divided by the extra requests is the cost of one request, start-up cancelled out. The
child runs this file by path with the tree first on PYTHONPATH, so it measures that tree's code.
"""
from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("userinfo", "introspect", "refresh")
SMALL, LARGE = 20, 220
PASSWORD = "a password for the instruction count"
SECRET = "instruction-count-secret-" + "x" * 32


def _env(tree: Path, var: Path) -> dict[str, str]:
    """The child's environment: `tree`'s code, its own database; no Redis (the fast path uses none)."""
    return dict(os.environ, DJANGO_SETTINGS_MODULE="loginsvc.settings", PYTHONPATH=str(tree), PYTHONSAFEPATH="1",
                LOGINSVC_VAR_DIR=str(var), REDIS_URL="redis://127.0.0.1:1/0", LOGINSVC_ACCESS_LOG="0",
                PYTHONHASHSEED="0")


def _command(*args: str) -> list[str]:
    """This file, run by path as the child (the tree under test comes first on PYTHONPATH)."""
    return [sys.executable, str(Path(__file__).resolve()), "--child", *args]


def per_request(tree: Path, var: Path) -> dict[str, int]:
    """Instructions per request of each kind for the code in `tree` (its database under `var`)."""
    from loadtests.bench.hot_path import callgrind_total

    var.mkdir(parents=True, exist_ok=True)
    prepared = subprocess.run(_command("prepare"), env=_env(tree, var), cwd=tree, capture_output=True, text=True,
                              timeout=300)
    if prepared.returncode:
        raise RuntimeError(f"preparing {tree.name}: {prepared.stderr[-800:]}")
    counts = {}
    for kind in KINDS:
        small, large = (callgrind_total(_command("serve", kind, str(n)), _env(tree, var), tree) for n in (SMALL, LARGE))
        counts[kind] = (large - small) // (LARGE - SMALL)
    return counts


def run(out_dir: Path) -> dict[str, Any]:
    if shutil.which("valgrind") is None:
        print("\nSSO instructions per request: skipped (needs Debian's valgrind)")
        return {"skipped": "valgrind is not installed"}
    from loadtests.bench.sso_bench import export_tree

    result: dict[str, Any] = {"requests": LARGE - SMALL}
    with tempfile.TemporaryDirectory(prefix="bench-sso-instr-") as scratch:
        result["now"] = per_request(ROOT, Path(scratch) / "now")
        before = os.environ.get("BENCH_SSO_BEFORE")
        if before:
            tree = Path(scratch) / "before-tree"
            export_tree(before, tree)
            result["before"] = per_request(tree, Path(scratch) / "before")
            result["before_ref"] = before
    print_table(result)
    return result


def print_table(result: dict[str, Any]) -> None:
    before = result.get("before")
    print(f"\nSSO, instructions per request (callgrind, {result['requests']} requests' difference; "
          "userinfo and introspection on the fast path, refresh grants through Django)")
    print(f"{'endpoint':<26}{'now':>12}" + (f"{'before':>12}{'now ÷ before':>14}" if before else ""))
    for kind in KINDS:
        line = f"{kind:<26}{result['now'][kind]:>12,}"
        if before:
            line += f"{before[kind]:>12,}{result['now'][kind] / before[kind]:>14.4f}"
        print(line)


# --- the child ----------------------------------------------------------------------------------------

def _prepare() -> None:
    """A migrated database with the user, the product, one access token and one refresh token of a
    live sign-in (their values in var/)."""
    import django

    django.setup()
    import secrets
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone
    import time
    import uuid

    from oauth2_provider.models import AccessToken, Application, RefreshToken, set_token_value

    from loginsvc.accounts.models import User
    from loginsvc.sso.models import SignIn

    call_command("migrate", "--noinput", "-v", "0")
    user = User.objects.create_user("instructions@example.test", PASSWORD)
    application = Application.objects.create(
        client_id="webmail", name="webmail", client_secret=SECRET, client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris="https://webmail.example.test/cb",
        skip_authorization=True, algorithm=Application.RS256_ALGORITHM, hash_client_secret=True)
    raw = secrets.token_urlsafe(24)
    token = AccessToken(user=user, application=application, scope="openid email profile",
                        expires=timezone.now() + timedelta(days=1))
    set_token_value(token, raw)
    token.save()
    (Path(os.environ["LOGINSVC_VAR_DIR"]) / "instructions-token").write_text(raw)
    family, refresh_raw = uuid.uuid4(), secrets.token_urlsafe(24)
    paired = AccessToken(user=user, application=application, scope="openid email profile",
                         expires=timezone.now() + timedelta(minutes=10))
    set_token_value(paired, secrets.token_urlsafe(24))
    paired.save()
    refresh = RefreshToken(user=user, application=application, access_token=paired, token_family=family)
    set_token_value(refresh, refresh_raw)
    refresh.save()
    SignIn.objects.create(sid=secrets.token_urlsafe(24), user=user, application=application,
                          auth_time=int(time.time()), token_family=family)
    (Path(os.environ["LOGINSVC_VAR_DIR"]) / "instructions-refresh").write_text(refresh_raw)
    # The signing key ring, made here: generating its RSA key takes a random number of instructions,
    # which would land in whichever counted run came first.
    from loginsvc.sso import keys

    keys.ring()


def _serve(kind: str, n: int) -> None:
    """n requests (after 5 to warm up) through the fast path, each a 200 (userinfo and introspection:
    served by the fast path itself; refresh grants: by Django, each rotating the token)."""
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    from loginsvc.sso import fast_token

    import json

    raw = (Path(os.environ["LOGINSVC_VAR_DIR"]) / "instructions-token").read_text()
    refresh = [(Path(os.environ["LOGINSVC_VAR_DIR"]) / "instructions-refresh").read_text()]
    app = fast_token.wrap(WSGIHandler())
    if not isinstance(app, fast_token.FastTokenApp):
        raise SystemExit(f"the fast path is off: {fast_token.unsupported()}")
    basic = "Basic " + base64.b64encode(f"webmail:{SECRET}".encode()).decode()
    statuses: list[str] = []

    def environ() -> dict[str, Any]:
        env: dict[str, Any] = {"SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1:8000",
                               "REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1", "SCRIPT_NAME": "",
                               "QUERY_STRING": "", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr}
        if kind == "userinfo":
            env.update({"REQUEST_METHOD": "GET", "PATH_INFO": "/oidc/userinfo/", "HTTP_AUTHORIZATION": f"Bearer {raw}",
                        "wsgi.input": BytesIO(b"")})
        else:
            path, body = (("/oidc/introspect/", f"token={raw}".encode()) if kind == "introspect" else
                          ("/oidc/token/", f"grant_type=refresh_token&refresh_token={refresh[0]}".encode()))
            env.update({"REQUEST_METHOD": "POST", "PATH_INFO": path, "HTTP_AUTHORIZATION": basic,
                        "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(body)),
                        "wsgi.input": BytesIO(body)})
        return env

    for _ in range(5 + n):
        answer = b"".join(app(environ(), lambda status, headers, exc_info=None: statuses.append(status)))
        if kind == "refresh" and statuses[-1].startswith("200"):
            refresh[0] = json.loads(answer)["refresh_token"]
    if not all(status.startswith("200") for status in statuses):
        raise SystemExit(f"not every answer was a 200: {sorted(set(statuses))}")
    if kind == "refresh":  # the family goes on from here in the next run (the old token is spent)
        (Path(os.environ["LOGINSVC_VAR_DIR"]) / "instructions-refresh").write_text(refresh[0])
        return
    from prometheus_client import REGISTRY

    served = REGISTRY.get_sample_value("loginsvc_sso_fast_path_total", {"endpoint": kind, "result": "served"}) or 0
    if served < 5 + n:
        raise SystemExit(f"the fast path served {served:g} of {5 + n}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs="+", required=True, help="prepare | serve KIND N")
    args = parser.parse_args(argv)
    if args.child[0] == "prepare":
        _prepare()
    else:
        _serve(args.child[1], int(args.child[2]))


if __name__ == "__main__":
    main()
