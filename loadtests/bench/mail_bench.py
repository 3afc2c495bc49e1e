"""Mail clients' checks per worker: app-password logins and mail-token introspection beside /api/session.

Dovecot asks the login service at every IMAP and SMTP login (docs/mail-clients.md), so these calls
run at the rate of mail clients' connections. One node (1 worker, 2 threads, as login_bench measures
/api/session), wrk with 8 connections, interleaved rounds whose order rotates. The ratios within the run
are the machine-independent figures; the load average says how busy the machine was. The goal for
introspection is 0.8 of /api/session's rate, as for products; the app-password check has no fast path
of its own (it counts an attempt in Redis for every login, as a sign-in does) and is reported beside it.

What each row asks, as Dovecot does:
- POST /api/mail/check: the mail server's client (HTTP Basic), an account's address and a valid app
  password, service imap, the mail client's address (one per connection, so the pair counters of 16
  addresses take the load; the account's own counter is given back at each success);
- POST /oidc/introspect/: the same client, a token the public mail-client product got with scope mail;
- GET /api/session with a signed-in session cookie; GET /healthz, the floor.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from deploy.node import Node, free_port, manage
from deploy.redis_server import RedisServer
from loadtests.bench import wrk
from loadtests.bench.login_bench import _median_round
from loadtests.bench.sso_load import EMAIL, Product, prepare

CONNECTIONS = 8
GOAL_RATIO = 0.8
ROWS = ("api_session", "mail_check", "introspect_mail", "healthz")
# An app password and a mail token for the bench's account, the mail server's client registered.
SETUP = """
import datetime, json, secrets
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application
from loginsvc.accounts.models import User
from loginsvc.mailclients import app_passwords
from loginsvc.mailclients.models import AppPassword
user = User.objects.get(email=%(email)r)
Application.objects.create(client_id="dovecot", name="Mail server", client_type="confidential",
    authorization_grant_type="client-credentials", client_secret=%(secret)r, hash_client_secret=True)
app = Application.objects.create(client_id="mail-client", name="Mail app", client_type="public",
    authorization_grant_type="authorization-code", redirect_uris="http://127.0.0.1/callback", algorithm="RS256")
password = app_passwords.new_password()
AppPassword.objects.create(user=user, public_id="bench", name="bench", scope="mail",
    digest=app_passwords.digest(app_passwords.normalise(password)), created=timezone.now())
token = secrets.token_urlsafe(30)
AccessToken.objects.create(user=user, application=app, token=token, scope="openid mail offline_access",
    expires=timezone.now() + datetime.timedelta(days=1))
print(json.dumps({"password": password, "token": token}))
"""
FORM_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local bodies = {%(bodies)s}
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n %% #bodies) + 1])
end
"""


def _script(scratch: Path, name: str, bodies: list[str]) -> str:
    path = scratch / f"{name}.lua"
    path.write_text(FORM_LUA % {"bodies": ", ".join(json.dumps(b) for b in bodies)})
    return str(path)


def run(out_dir: Path, seconds: int = 3, rounds: int = 10) -> dict:
    load_at_start = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="bench-mail-"))
    redis = RedisServer(scratch / "redis", port=free_port()).start()
    secret = secrets.token_urlsafe(32)
    env = dict(os.environ, LOGINSVC_VAR_DIR=str(scratch / "var"), REDIS_URL=redis.url,
               DJANGO_SETTINGS_MODULE="loginsvc.settings", WEB_CONCURRENCY="1")
    env.pop("DATABASE_URL", None)
    node = None
    try:
        prepare(env, secrets.token_urlsafe(32))
        made = json.loads(manage(env, "shell", "-v", "0", "-c", SETUP % {"email": EMAIL, "secret": secret})
                          .stdout.strip().splitlines()[-1])
        node = Node(dict(env, PROMETHEUS_MULTIPROC_DIR=str(scratch / "metrics")), "bench", "bench-mail",
                    log_path=scratch / "node.log").start()
        session = Product(node.port, secret)  # its browser's session cookie (the product itself is not used)
        basic = {"Authorization": "Basic " + base64.b64encode(f"dovecot:{secret}".encode()).decode()}
        checks = _script(scratch, "check", [
            f"username={EMAIL}&password={made['password']}&service=imap&remote_ip=192.0.2.{i}" for i in range(1, 17)])
        introspect = _script(scratch, "introspect", [f"token={made['token']}&token_type_hint=access_token"])

        def one(row: str, length: int) -> dict:
            if row == "api_session":
                return wrk.run(node.url + "/api/session", CONNECTIONS, length, headers={"Cookie": session.cookie})
            if row == "mail_check":
                return wrk.run(node.url + "/api/mail/check", CONNECTIONS, length, headers=basic, script=checks)
            if row == "introspect_mail":
                return wrk.run(node.url + "/oidc/introspect/", CONNECTIONS, length, headers=basic, script=introspect)
            return wrk.run(node.url + "/healthz", CONNECTIONS, length)

        for row in ROWS:
            one(row, 1)
        runs: dict[str, list[dict]] = {row: [] for row in ROWS}
        for index in range(rounds):
            for row in ROWS[index % len(ROWS):] + ROWS[:index % len(ROWS)]:
                runs[row].append(one(row, seconds))
    except BaseException:
        print(f"mail bench failed; the node's log is in {scratch}")
        raise
    finally:
        if node is not None:
            node.stop()
        redis.stop()
    shutil.rmtree(scratch, ignore_errors=True)
    result: dict = {"machine": {"cores": os.cpu_count() or 1,
                                "load_average_at_start": [round(x, 2) for x in load_at_start],
                                "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
                    "node": {"workers": 1, "threads": int(os.environ.get("LOGINSVC_THREADS", "2"))},
                    "rounds": rounds, "seconds_per_round": seconds, "connections": CONNECTIONS, "goal_ratio": GOAL_RATIO}
    for row, done in runs.items():
        result[row] = {"median": _median_round(done), "rounds": [round(r["requests_per_s"]) for r in done],
                       "non_2xx": sum(r["non_2xx"] for r in done), "socket_errors": sum(r["socket_errors"] for r in done)}
    result["ratio_median_of_rounds"] = {row: statistics.median(
        a / b for a, b in zip(result[row]["rounds"], result["api_session"]["rounds"])) for row in ROWS}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "mail.json").write_text(json.dumps(result, indent=2))
    print_table(result)
    return result


LABELS = {"api_session": "GET /api/session, logged in", "mail_check": "POST /api/mail/check, app password",
          "introspect_mail": "POST /oidc/introspect/, mail token", "healthz": "GET /healthz (floor)"}


def print_table(result: dict) -> None:
    machine = result["machine"]
    print(f"\nMail clients' checks per worker ({machine['cores']} cores, load average at start "
          f"{' '.join(f'{x:.2f}' for x in machine['load_average_at_start'])}; 1 worker, {result['node']['threads']} "
          f"threads; wrk -c{result['connections']}, {result['rounds']} interleaved rounds of "
          f"{result['seconds_per_round']} s; median round)")
    print(f"{'request':<40}{'req/s':>8}{'÷ session':>11}{'goal':>8}   p50 / p99 ms     rounds")
    for row in ROWS:
        median, bad = result[row]["median"], result[row]["non_2xx"] + result[row]["socket_errors"]
        goal = f">= {result['goal_ratio']}" if row == "introspect_mail" else ""
        print(f"{LABELS[row]:<40}{median['requests_per_s']:>8.0f}{result['ratio_median_of_rounds'][row]:>11.3f}"
              f"{goal:>8}   {median['p50']:5.2f} / {median['p99']:6.2f}   {result[row]['rounds']}"
              + (f"   ({bad} non-2xx or socket errors: not valid)" if bad else ""))
    print(f"  load average at end: {' '.join(f'{x:.2f}' for x in machine['load_average_at_end'])}")


if __name__ == "__main__":
    run(Path("var/bench"))
