"""The password recovery journey and its mail delay, on the real mail path: real gunicorn nodes of two clusters
queue the codes, their outbox threads deliver them over SMTP to the real local mail server
(python -m deploy.mail_server), and the matcher reads the files it wrote. Then the journey itself, in a real
headless Locust run on the suites' locustfile, asks within the service's hourly limit and times every mail.
(Locust itself is only imported in its own process: gevent's monkey-patching would break this one.)"""
from __future__ import annotations

import json
import os
import random
import re
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests

from deploy.node import free_port, wait_port
from deploy.stack import maildir
from loadtests import mail_delay, report
from loadtests.mail_delay import DELIVERED, LIMITED, LOST, REFUSED, Asked, MailDelay, match
from loadtests.mail_index import Mail, MailIndex
from loadtests.pacing import RecoveryAccounts, RecoverySchedule
from loginsvc.accounts.load_users import email_of
from tests import plugin
from tests.support import ROOT, LoginNode, fresh_database, manage, node_env, wait_for

LIMIT = 2                         # LOGINSVC_RECOVERY_CODES_PER_HOUR of these nodes: the limit is reached quickly
PASSWORD = "a load-test password for the recovery journey"
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')   # as the journeys read it
DELIVERY_BOUND = 30.0             # the outbox kicks its thread at commit; its poll (5 s) is the fallback


@dataclass
class MailStack:
    var: Path
    smtp_port: int
    blue: LoginNode
    green: LoginNode
    env: dict[str, str]

    @property
    def maildir(self) -> Path:
        return maildir(self.var)


@pytest.fixture(scope="module")
def mail_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailStack]:
    """blue-1 and green-1 on one database, sending to the real local mail server; load accounts in three sets."""
    root = tmp_path_factory.mktemp("recovery")
    var = root / "var"
    var.mkdir(mode=0o700)
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    with open(root / "mail.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "deploy.mail_server", "--listen", f"127.0.0.1:{port}",
                                   "--maildir", str(maildir(var))], cwd=ROOT, env=clean, stdout=log,
                                  stderr=subprocess.STDOUT)
    nodes: list[LoginNode] = []
    try:
        wait_port(port)
        env = node_env(var, plugin.REDIS.url, EMAIL_URL=f"smtp://127.0.0.1:{port}", LOGINSVC_MODE="local",
                       LOGINSVC_RECOVERY_CODES_PER_HOUR=str(LIMIT))
        fresh_database(env)
        for prefix, count in (("ltrec", 3), ("ltearlier", 1), ("ltjourney", 2)):
            manage(dict(env, LOADTEST_PASSWORD=PASSWORD), "ensure_load_users", "--count", str(count),
                   "--prefix", prefix)
        for cluster in ("blue", "green"):
            node = LoginNode(env, cluster, f"{cluster}-1", root)
            nodes.append(node)
            node.start()
        yield MailStack(var, port, nodes[0], nodes[1], env)
    finally:
        for node in nodes:
            node.stop()
        server.terminate()
        server.wait(10)


def ask(node: LoginNode, email: str) -> Asked:
    """What the journey does (loadtests/recovery.py), with plain requests: the page's CSRF token, then the ask."""
    with requests.Session() as browser:
        page = browser.get(node.url + "/recover/", timeout=10)
        token = CSRF_INPUT.search(page.text)
        assert page.status_code == 200 and token, page.status_code
        sent = time.time()
        answer = browser.post(node.url + "/api/recover", json={"email": email}, headers={"X-CSRFToken": token.group(1)},
                              timeout=10)
    served = answer.headers.get("X-Served-By")
    return Asked(email, served.split("/", 1)[0] if served else None, sent, answer.status_code)


def recovery_mails(index: MailIndex, count: int) -> list[Mail]:
    def arrived() -> bool:
        index.scan()
        return len(index.mails) >= count
    wait_for(arrived, DELIVERY_BOUND, f"{count} recovery mail(s) in the Maildir")
    return index.mails


def test_each_code_is_timed_from_its_request_to_the_file_the_mail_server_wrote(mail_stack: MailStack) -> None:
    """Per cluster: delivered with its delay, the third ask of an account within the hour `limited` (202 and no
    mail, as the service promises), an ask for an address without an account `lost`, other mail ignored."""
    a, b, nobody = email_of(0, "ltrec"), email_of(1, "ltrec"), email_of(9, "ltnobody")
    index = MailIndex(mail_stack.maildir, time.time() - 1)
    asked = [ask(mail_stack.blue, a), ask(mail_stack.green, b), ask(mail_stack.blue, a)]
    other = EmailMessage()   # another kind of mail to the same address, as the service sends (a new sign-in)
    other["From"], other["To"], other["Subject"] = "login@example.test", a, "A new sign-in to your account"
    other.set_content("Someone signed in: 12345678\n")
    with smtplib.SMTP("127.0.0.1", mail_stack.smtp_port, local_hostname="localhost", timeout=5) as smtp:
        smtp.send_message(other)
    asked += [ask(mail_stack.blue, a), ask(mail_stack.green, nobody)]
    assert [x.status for x in asked] == [202] * 5 and [x.cluster for x in asked] == ["blue", "green", "blue",
                                                                                      "blue", "green"]
    mails = recovery_mails(index, 3)
    time.sleep(1.0)   # the two that must not come would be as quick as the three that came
    assert len(index.scan()) == 0 and len(mails) == 3, mails
    assert sorted(m.recipient for m in mails) == [a, a, b]
    for mail in mails:   # the time received is when the server stored the file: its name says it, to the µs
        [path] = [p for p in (mail_stack.maildir / "new").iterdir() if p.name.startswith(mail.name)]
        seconds, micros = path.name.split("P")[0].split(".M")
        assert mail.received == int(seconds) + int(micros) / 1e6
        # written a moment later, by the kernel's coarse clock: up to a timer tick behind time.time()
        assert -0.02 <= path.stat().st_mtime_ns / 1e9 - mail.received < 1.0

    outcomes = match(asked, mails, LIMIT)
    assert [o.state for o in outcomes] == [DELIVERED, DELIVERED, DELIVERED, LIMITED, LOST]
    delays = [o.delay for o in outcomes if o.delay is not None]
    assert all(0 < d < DELIVERY_BOUND for d in delays), delays
    assert outcomes[0].delay == min(m.received for m in mails if m.recipient == a) - asked[0].sent

    figures = mail_delay.figures(outcomes)
    blue, green, total = figures["clusters"]["blue"], figures["clusters"]["green"], figures["total"]
    assert {k: blue[k] for k in mail_delay.COLUMNS} == {"asked": 3, "delivered": 2, "lost": 0, "limited": 1,
                                                        "refused": 0}
    assert {k: green[k] for k in mail_delay.COLUMNS} == {"asked": 2, "delivered": 1, "lost": 1, "limited": 0,
                                                         "refused": 0}
    assert total["asked"] == 5 and total["delivered"] == 3
    assert total["p50"] <= total["p95"] <= total["p99"] == total["max"] == round(max(delays) * 1000, 1)
    assert green["p50"] == green["p99"] == round(delays[1] * 1000, 1)   # one sample: every rank is it


def test_mail_of_an_earlier_run_counts_against_the_hourly_limit(mail_stack: MailStack) -> None:
    """One code mailed before the run: of the run's two asks for the address, the second is beyond the limit
    of two; the service sends nothing for it and the matcher calls it limited, not lost."""
    c = email_of(0, "ltearlier")
    before = MailIndex(mail_stack.maildir, time.time() - 1)
    earlier = ask(mail_stack.green, c)
    recovery_mails(before, 1)
    run = MailDelay()
    run.watch(mail_stack.maildir, time.time(), LIMIT)   # reads the hour before the run, so the earlier mail
    run.add(ask(mail_stack.blue, c))
    run.add(ask(mail_stack.blue, c))
    run.add(Asked(c, None, time.time(), 0))            # no answer at all: refused, no mail expected
    run.wait(5.0)
    assert [o.state for o in run.outcomes()] == [DELIVERED, LIMITED, REFUSED]
    assert 0 < run.waited < 5.0                         # every mail due came: no waiting out the grace
    summary = run.summary(4.0, 5.0)
    assert summary["total"]["limited"] == 1 and summary["total"]["lost"] == 0 and summary["note"] is None
    assert [len(r) for r in summary["requests"]] == [4, 4, 4] and earlier.status == 202
    # The journey's picking would not have asked the second time: the Maildir's mail counts for it too.
    assert run.index is not None
    accounts = RecoveryAccounts([c], LIMIT, [(m.recipient, m.received) for m in run.index.mails])
    assert accounts.take() is None


def test_picking_spreads_over_the_accounts_and_keeps_each_within_the_hour() -> None:
    now = 10_000.0
    accounts = RecoveryAccounts(["x", "y", "z"], 2, [("y", now - 100), ("x", now - 4000), ("w", now - 5)])
    taken = [accounts.take(now + i) for i in range(7)]
    assert taken == ["x", "z", "y", "x", "z", None, None]   # y had one in the hour; x's is older than an hour
    assert accounts.take(now + 3501) == "y"                  # y's earlier code leaves the window


def test_the_schedule_keeps_its_rate_and_does_not_burst_after_a_stall() -> None:
    schedule = RecoverySchedule(per_minute=6)
    first = schedule.wait(now=0.0)
    assert 0 <= first <= 10 and schedule.wait(now=first) == pytest.approx(10.0)
    assert schedule.wait(now=first + 60) == 0.0 and schedule.wait(now=first + 60) == pytest.approx(10.0)


def test_the_journey_in_locust_asks_within_the_limit_and_times_every_mail(mail_stack: MailStack,
                                                                          tmp_path: Path) -> None:
    """The real journey: two accounts at a limit of two carry four asks; the turns after them ask nothing
    (skipped) rather than ask beyond the limit. Every ask's mail is timed, and the report shows the table."""
    out = tmp_path / "run"
    env = dict(mail_stack.env, LOADTEST_PASSWORD=PASSWORD)
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
               "--host", mail_stack.blue.url, "--only-summary", "--stop-timeout", "5", "--loglevel", "WARNING",
               "--lt-scenario", "steady", "--lt-duration", "9", "--lt-users", "1", "--lt-out", str(out),
               "--lt-var-dir", str(mail_stack.var), "--lt-accounts", "ltjourney:2", "--lt-mfa", "0",
               "--lt-recovery-per-minute", "40", "--lt-mail-grace", "20", "RecoveryUser"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert (out / "summary.json").exists(), result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    mail = summary["mail"]
    assert {k: mail["total"][k] for k in mail_delay.COLUMNS} == {"asked": 4, "delivered": 4, "lost": 0,
                                                                 "limited": 0, "refused": 0}, mail
    assert mail["skipped"] >= 1 and "every account had its 2 codes" in mail["note"]
    assert list(mail["clusters"]) == ["blue"] and mail["limit_per_hour"] == LIMIT
    assert 0 < mail["total"]["p50"] <= mail["total"]["p99"] < DELIVERY_BOUND * 1000
    assert sorted(r[2] for r in mail["requests"]) == ["delivered"] * 4
    assert summary["endpoints"]["recover"]["count"] == 4 and summary["endpoints"]["recover"]["errors"] == 0
    assert set(summary["endpoints"]) == {"recover", "recover-page"}   # only the journey Locust was given
    assert mail["waited_s"] < 20   # the last mail came well before the grace ran out
    lines = report.summary_lines(summary)
    start = lines.index(mail_delay.title(mail))
    assert lines[start + 1].split()[:6] == ["asked", "delivered", "lost", "limited", "refused", "p50"]
    assert lines[start + 2].split()[:6] == ["cluster", "blue", "4", "4", "0", "0"]
    assert "<h2>mail delay</h2>" in (out / "report.html").read_text()


def test_a_file_not_named_by_the_mail_server_is_timed_by_its_mtime(mail_stack: MailStack, tmp_path: Path) -> None:
    """Another writer's file (a real message of the server's, copied under another name) still counts."""
    [original, *_] = sorted((mail_stack.maildir / "new").iterdir())
    (tmp_path / "new").mkdir()
    copy = tmp_path / "new" / "from-another-writer"
    copy.write_bytes(original.read_bytes())
    os.utime(copy, ns=(1_800_000_000_123_456_789, 1_800_000_000_123_456_789))
    [mail] = MailIndex(tmp_path, 0).scan()
    assert mail.received == 1_800_000_000.123456789 and mail.name == "from-another-writer"
    assert MailIndex(tmp_path, 1_800_000_001).scan() == []   # older than the index's start: listed, never read


@pytest.mark.parametrize("args, named", [
    (["--recovery-per-minute", "61"], "--recovery-per-minute"),
    (["--recovery-per-minute", "-1"], "--recovery-per-minute"),
    (["--recovery-per-minute", "few"], "--recovery-per-minute"),
    (["--mail-grace", "0"], "--mail-grace"),
    (["--mail-grace", "601"], "--mail-grace"),
])
def test_bad_recovery_arguments_exit_2_with_one_line_naming_them(args: list[str], named: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run([sys.executable, "-m", "loadtests", "run", "--scenario", "steady", *args], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and named in lines[0], result.stderr


def test_a_remote_run_cannot_time_mail_it_cannot_read(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.txt"
    accounts.write_text("lt-001@staging.example:a password\n")
    accounts.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run([sys.executable, "-m", "loadtests", "run", "--scenario", "steady", "--remote", "--host",
                             "https://login.staging.example", "--accounts", str(accounts),
                             "--recovery-per-minute", "4"], cwd=ROOT, env=dict(env, LOADTEST_CLIENT_SECRET="s"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--recovery-per-minute: with --remote" in result.stderr, result.stderr


def test_the_matcher_agrees_with_the_services_own_rule_over_many_asks() -> None:
    """20,000 asks for 30 accounts, as fast as 2 a second: the service's rule (selfservice/recovery.py: a code
    and its mail while the address has had fewer than the limit in the past hour) decides which mail exists,
    with delays up to 3 s so mails overtake asks; the matcher must tell limited from delivered exactly."""
    rng = random.Random(7)
    asked: list[Asked] = []
    mails: list[Mail] = []
    truth: list[str] = []
    codes: dict[str, list[float]] = {}   # the service's own count: address -> when its codes were made
    now = 0.0
    for i in range(20_000):
        address = email_of(rng.randrange(30), "ltsim")
        asked.append(Asked(address, "blue", now, 202))
        recent = [t for t in codes.get(address, []) if t > now - 3600]
        if len(recent) < 5:
            codes[address] = [*recent, now]
            mails.append(Mail(address, now + rng.uniform(0.01, 3.0), f"m{i}"))
        truth.append(DELIVERED if len(recent) < 5 else LIMITED)
        now += rng.uniform(0.5, 20.0)
    outcomes = match(asked, mails, 5)
    assert [o.state for o in outcomes] == truth and truth.count(LIMITED) > 5_000
    assert all(0.01 <= o.delay <= 3.0 for o in outcomes if o.delay is not None)
