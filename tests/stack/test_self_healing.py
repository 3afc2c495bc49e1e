"""The whole stack under chaos: kill a node, a cluster, Redis, the router — users see no failed request."""
from __future__ import annotations

import json
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from deploy import dovecot_server
from deploy.node import manage
from tests.plugin import free_port
from tests.stack.conftest import STARTUP_BOUND_SECONDS, Poller, RunningStack, logged_in_browser, start_stack
from tests.support import Browser, Mailbox, Webhook, require

NODES = ("blue-1", "blue-2", "green-1", "green-2")
IMAP_EMAIL, IMAP_PASSWORD = "imap.user@example.test", "a long and careful password"


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Webhook, Mailbox, int]]:
    """The NOC's alert receivers: a webhook and an SMTP server (aiosmtpd), up before the stack starts."""
    hook, mailbox, smtp_port = Webhook().start(), Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield hook, mailbox, smtp_port
    controller.stop()
    hook.stop()


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory, receivers: tuple[Webhook, Mailbox, int]
                  ) -> Iterator[RunningStack]:
    """The stack of tests/stack/conftest.py, with the router's alerts going to `receivers`."""
    hook, _, smtp_port = receivers
    stack = start_stack(tmp_path_factory.mktemp("stack"), env_extra={
        "ALERT_WEBHOOK_URL": hook.url, "ALERT_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "ALERT_EMAIL_TO": "noc@example.test"})
    yield stack
    stack.stop()


def all_healthy(stack: RunningStack) -> bool:
    rows = stack.status()
    return all(rows[n]["state"] == "RUNNING" and rows[n]["health"] == "healthy" for n in NODES) and \
        rows["redis"]["health"] == "ok" and rows["router"]["health"] == "ok"


def test_status_lists_every_process_with_state_pid_uptime_restarts_and_health(running_stack: RunningStack) -> None:
    assert running_stack.startup_seconds < STARTUP_BOUND_SECONDS, f"the default stack took {running_stack.startup_seconds:.1f}s"
    running_stack.wait(lambda: all_healthy(running_stack), 20, "every process running and healthy")
    printed = running_stack.deploy("status", "--json")
    assert printed.returncode == 0, printed.stderr
    rows = {row["name"]: row for row in json.loads(printed.stdout)}
    assert set(rows) == {"redis", "mail", "router", *NODES}
    for name, row in rows.items():
        assert row["pid"] and row["restarts"] == 0, row
    assert {rows[n]["cluster"] for n in NODES} == {"blue", "green"}
    served = {running_stack.deploy("status").stdout.count(n) for n in NODES}
    assert served == {1}  # the table names each node once
    # The router knows the same four nodes, blue stable and green canary at the documented default share.
    st = running_stack.router()
    assert (st["stable"], st["canary"], st["percent"]) == ("blue", "green", 12.0)
    assert sorted(n["name"] for c in st["clusters"].values() for n in c["nodes"]) == sorted(NODES)


def test_killing_a_node_costs_no_request_and_it_comes_back(running_stack: RunningStack) -> None:
    browser = logged_in_browser(running_stack, "blue")
    before = running_stack.status()["blue-1"]
    with Poller(browser) as poller:
        time.sleep(0.3)
        result = running_stack.deploy("kill", "blue-1")
        assert result.returncode == 0 and f"killed blue-1 (pid {before['pid']})" in result.stdout, result
        running_stack.wait(lambda: running_stack.status()["blue-1"]["restarts"] == 1, 20, "blue-1 restarted")
        running_stack.wait(lambda: all_healthy(running_stack), 20, "blue-1 healthy in the router")
        served_before = poller.count("blue/blue-1")
        running_stack.wait(lambda: poller.count("blue/blue-1") > served_before or
                           poller.count("blue/blue-2") > 0, 10, "traffic on blue")
    assert poller.failures == []
    assert running_stack.status()["blue-1"]["pid"] != before["pid"]


def test_killing_the_whole_green_cluster_moves_its_pinned_user_to_blue_and_back(
        running_stack: RunningStack, receivers: tuple[Webhook, Mailbox, int]) -> None:
    hook, mailbox, _ = receivers
    browser = logged_in_browser(running_stack, "green")
    with Poller(browser) as poller:
        time.sleep(0.3)
        assert poller.count("green/") > 0
        killed = running_stack.deploy("kill", "green")
        assert killed.returncode == 0 and killed.stdout.count("killed green-") == 2, killed
        # Failover: the user pinned to green is served by blue, still logged in.
        running_stack.wait(lambda: poller.served[-1].startswith("blue/"), 10, "pinned user served by blue")
        # Self-healing: supervisord restarts both nodes; the router readmits them after `rise` good checks
        # and gives green its share back through slow start, so the pinned user returns to green.
        running_stack.wait(lambda: all_healthy(running_stack), 30, "green restarted and healthy")
        running_stack.wait(lambda: poller.served[-1].startswith("green/"), 45, "pinned user back on green")
    assert poller.failures == []
    assert poller.count("blue/") > 0
    rows = running_stack.status()
    assert rows["green-1"]["restarts"] >= 1 and rows["green-2"]["restarts"] >= 1
    # The NOC heard of it at every receiver, once, as one summary rather than one alert per node.
    cascade = "green: 2 nodes down, failover to blue"
    running_stack.wait(lambda: any(cascade in m for m in mailbox.messages) and any(cascade in t for t in hook.texts()),
                       10, "the cascade by email and by webhook")
    time.sleep(1)      # a second delivery, if there were one, would have come by now
    assert sum(cascade in t for t in hook.texts()) == 1, hook.texts()
    assert sum(cascade in m for m in mailbox.messages) == 1
    journal = [json.loads(line) for line in (running_stack.var_dir / "alerts" / "journal.jsonl").read_text().splitlines()]
    assert sorted(e["node"] for e in journal if e["kind"] == "node_down" and e["cluster"] == "green") == ["green-1", "green-2"]


def test_killing_redis_logs_nobody_out_and_it_comes_back(running_stack: RunningStack) -> None:
    browser = logged_in_browser(running_stack)
    redis_before = running_stack.status()["redis"]
    with Poller(browser) as poller:
        time.sleep(0.3)
        assert running_stack.deploy("kill", "redis").returncode == 0
        running_stack.wait(lambda: running_stack.status()["redis"]["restarts"] >= redis_before["restarts"] + 1, 20,
                           "redis restarted")
        running_stack.wait(lambda: running_stack.status()["redis"]["health"] == "ok", 20, "redis answering")
        time.sleep(1.0)  # keep polling across the return, while the nodes reconnect
    assert poller.failures == []
    # The session was written through to the database, so it survives the empty Redis; a fresh login works too.
    assert browser.call("GET", "/api/session").json()["authenticated"] is True
    assert logged_in_browser(running_stack).call("GET", "/api/session").json()["email"] == "demo@example.test"
    # The router put its routing state back into the new, empty Redis.
    running_stack.wait(lambda: running_stack.router()["percent"] == 12.0, 5, "routing state intact")


def test_killing_the_router_restarts_it_with_its_state(running_stack: RunningStack) -> None:
    running_stack.router("POST", "/api/ramp", {"percent": 20})
    pid = running_stack.status()["router"]["pid"]
    assert running_stack.deploy("kill", "router").returncode == 0
    running_stack.wait(lambda: running_stack.status()["router"]["pid"] not in (None, pid) and
                       running_stack.status()["router"]["health"] == "ok", 20, "router back")
    assert running_stack.router()["percent"] == 20.0
    running_stack.router("POST", "/api/ramp", {"percent": 12})
    running_stack.wait(lambda: all_healthy(running_stack), 20, "stack healthy")
    assert logged_in_browser(running_stack).call("GET", "/api/session").json()["authenticated"] is True


def test_mail_clients_keep_logging_in_while_a_cluster_is_killed(running_stack: RunningStack, tmp_path: Path) -> None:
    """Dovecot asks the login service through the router like any product back end (docs/mail-clients.md):
    killing the stable cluster while IMAP logins go on refuses none of them for a wrong password; at most
    the few in flight at the kill get a temporary failure, which mail clients retry."""
    require(dovecot_server.missing() is None, str(dovecot_server.missing()))
    secret_file = tmp_path / "dovecot-secret"
    secret_file.write_text(secrets.token_urlsafe(32) + "\n")
    assert manage(running_stack.env, "register_mail_server", "--secret-file", str(secret_file)).returncode == 0
    manage(dict(running_stack.env, LOGINSVC_NEW_PASSWORD=IMAP_PASSWORD), "create_user", IMAP_EMAIL)
    browser = Browser(running_stack.base)
    assert browser.login(IMAP_EMAIL, IMAP_PASSWORD).status_code == 200
    password = browser.call("POST", "/api/app-passwords", json={"name": "imap", "scope": "imap"},
                            headers={"X-CSRFToken": browser.csrf_token()}).json()["password"]
    run_dir = Path(tempfile.mkdtemp(prefix="loginsvc-dovecot-"))
    run_dir.chmod(0o711)  # run as root, Dovecot's mail user must reach the mailboxes
    dovecot = dovecot_server.DovecotServer(run_dir, free_port(), free_port(), running_stack.base, "dovecot",
                                           secret_file.read_text().strip(), free_port(), auth_failure_delay="0").start()
    answers: list[str] = []
    stop = threading.Event()

    def logins() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            source = f"127.0.{2 + n // 250}.{n % 250 + 2}"  # Dovecot slows an address's logins after a failure
            try:
                with socket.create_connection(("127.0.0.1", dovecot.imap_port), 10, source_address=(source, 0)) as raw:
                    raw.settimeout(10)
                    raw.recv(1024)
                    raw.sendall(f'a LOGIN "{IMAP_EMAIL}" "{password}"\r\n'.encode())
                    answers.append(raw.recv(1024).decode(errors="replace"))
            except OSError as exc:
                answers.append(f"socket: {exc}")

    worker = threading.Thread(target=logins, daemon=True)
    try:
        worker.start()
        running_stack.wait(lambda: len(answers) >= 5, 20, "IMAP logins going")
        killed = running_stack.deploy("kill", "blue")
        assert killed.returncode == 0, killed
        before_kill = len(answers)
        running_stack.wait(lambda: len(answers) >= before_kill + 20, 30, "IMAP logins after the kill")
        running_stack.wait(lambda: all_healthy(running_stack), 40, "blue restarted and healthy")
    finally:
        stop.set()
        worker.join(15)
        dovecot.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    refused = [a for a in answers if "AUTHENTICATIONFAILED" in a or "socket:" in a]
    temporary = [a for a in answers if "UNAVAILABLE" in a]
    assert refused == [] and len(temporary) <= 2, (refused, temporary)
    assert sum(a.startswith("a OK") for a in answers) >= len(answers) - 2
