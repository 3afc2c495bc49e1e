"""OpenID Connect Back-Channel Logout 1.0 §2.5 from several processes at once: each logout is delivered once.

Two real `manage.py deliver_logouts` processes (the same loop as a node's delivery thread) work the
same outbox at the same moment, on SQLite and on a real PostgreSQL server started for the test, and
a slow product makes their passes overlap. The claim (a conditional UPDATE) must let exactly one
of them deliver each row.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from deploy.node import ROOT, manage, wait_for
from tests import plugin
from tests.support import node_env
from tests.sso.test_oidc_backchannel_logout_nodes import ENV, PREPARE, SECRET
from tests.sso.test_oidc_backchannel_logout_receiver import Receiver

ROWS = 60

QUEUE = """
import json
from datetime import timedelta
from django.utils import timezone
from oauth2_provider.models import Application
from loginsvc.sso import keys
from loginsvc.sso.models import LogoutDelivery
due = timezone.now() + timedelta(seconds={delay})
apps = list(Application.objects.order_by("client_id"))
LogoutDelivery.objects.bulk_create([
    LogoutDelivery(application=apps[i % len(apps)], uri={uri!r}.format(apps[i % len(apps)].client_id),
                   sub="7", sid=f"sid-{{i}}", next_attempt=due) for i in range({rows})])
print(json.dumps(keys.ring().jwks()))
"""


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL server of our own (initdb on a free port, as `nobody` when we are root)."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("needs PostgreSQL's initdb and pg_ctl on PATH (the SQLite case runs everywhere)")
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    directory = Path(tempfile.mkdtemp(prefix="loginsvc-pg-"))
    if as_user:
        shutil.chown(directory, "nobody")
    port, data = plugin.free_port(), directory / "data"
    run = lambda *args: subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)  # noqa: E731
    run(initdb, "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
    run(pg_ctl, "-D", str(data), "-l", str(directory / "log"), "-w", "start", "-o",
        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off")
    try:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as db:
            db.execute("CREATE DATABASE loginsvc")
        yield f"postgresql://postgres@127.0.0.1:{port}/loginsvc"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(directory, ignore_errors=True)


def deliverer(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with open(log, "w") as err:
        return subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "deliver_logouts", "--json"], env=env,
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_processes_delivering_at_once_deliver_each_logout_once(database: str, scratch: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    env = node_env(scratch / "var", plugin.REDIS.url, **ENV)
    env.pop("DATABASE_URL", None)  # [sqlite]: the scratch SQLite file, not the suite's shared PostgreSQL
    if database == "postgresql":
        env["DATABASE_URL"] = request.getfixturevalue("postgres")
    manage(env, "migrate", "--noinput", "-v", "0")
    receiver = Receiver({"keys": []}, delay=0.05)             # JWKS filled in below, before it listens
    manage(env, "shell", "-v", "0", "-c", PREPARE.format(email="ann@example.test", password="x" * 16, secret=SECRET,
                                                         products={"webmail": "", "admin-portal": ""}))
    # Due a few seconds from now, when both processes are up and polling, so their passes overlap.
    queued = manage(env, "shell", "-v", "0", "-c", QUEUE.format(
        delay=6, rows=ROWS, uri=f"http://127.0.0.1:{receiver.port}/{{}}/backchannel-logout"))
    jwks = json.loads(queued.stdout.strip().splitlines()[-1])
    receiver.jwks = lambda: jwks
    receiver.start()
    processes = [deliverer(env, scratch / f"deliverer-{i}.log") for i in range(2)]
    try:
        wait_for(lambda: len(receiver.received) >= ROWS or any(p.poll() is not None for p in processes), 60,
                 f"{ROWS} deliveries")
        time.sleep(1.5)                                          # a further pass of each adds nothing
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        outputs = [process.communicate(timeout=30)[0] for process in processes]
    totals = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    jtis = receiver.jtis()
    assert len(jtis) == ROWS and set(jtis.values()) == {1}, Counter(jtis.values())
    assert receiver.rejected == []
    assert sum(t["delivered"] for t in totals) == ROWS and all(t["delivered"] > 0 for t in totals), totals
    assert all(t["retried"] == 0 and t["dropped"] == 0 for t in totals), totals
    status = json.loads(manage(env, "deliver_logouts", "--status", "--json").stdout)
    assert {row["delivered_last_day"] for row in status.values()} == {ROWS // 2}
    receiver.stop()
