"""The IMAP journey against a real node and a real Dovecot (tests/mailclients/test_dovecot.py's): headless Locust runs
on the suites' locustfile log in at a fixed rate with app passwords the run makes and revokes, `--slo imap:…` judges
them, and the nodes' own histograms give the mail checks of the run's window per cluster. Then the parsing and
arithmetic of those histograms, and the journey's exit-2 refusals. (Locust runs in its own process only.)"""
from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from deploy.dovecot_server import DovecotServer
from deploy.node import free_port
from deploy.stack import NodeSpec, StackSpec
from loadtests import node_metrics, report
from loadtests.node_metrics import Histogram, Reading
from tests.loadtests.test_cli import without_database
from tests.mailclients.test_dovecot import PASSWORD, MailStack, app_password, mail_stack  # noqa: F401 (a fixture)
from tests.support import ROOT, Browser

RATE = 8.0
ACCOUNTS = ("ivy@example.test", "kim@example.test")


def accounts_file(stack: MailStack, folder: Path, emails: tuple[str, ...]) -> tuple[Path, list[Browser]]:
    """The run's accounts, made on the node, as an owner-only accounts file; and a browser signed in to each."""
    browsers = [stack.account(email) for email in emails]
    path = folder / "accounts.txt"
    path.write_text("".join(f"{email}:{PASSWORD}\n" for email in emails))
    path.chmod(0o600)
    return path, browsers


def spec_with(stack: MailStack, folder: Path) -> Path:
    """A stack spec naming the test's node, as `make up` writes one: where the run finds the nodes' metrics."""
    var = folder / "var"
    port = int(stack.node.url.rsplit(":", 1)[1])
    StackSpec(var_dir=str(var), nodes=[NodeSpec("blue", "blue-1", port)]).save()
    return var


def locust_run(stack: MailStack, dovecot: DovecotServer, folder: Path, accounts: Path, *slos: str) -> dict[str, Any]:
    out = folder / "run"
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
               "--host", stack.node.url, "--only-summary", "--stop-timeout", "5", "--loglevel", "WARNING",
               "--csv", str(folder / "locust"), "--lt-scenario", "steady", "--lt-duration", "3", "--lt-users", "1",
               "--lt-out", str(out), "--lt-var-dir", str(spec_with(stack, folder)), "--lt-accounts-file", str(accounts),
               "--lt-imap-per-second", str(RATE), "--lt-imap-port", str(dovecot.imap_port),
               *(arg for slo in slos for arg in ("--lt-slo", slo)), "ImapUser"]
    result = subprocess.run(command, cwd=ROOT, env=without_database(), capture_output=True, text=True, timeout=90)
    assert (out / "summary.json").exists(), result.stdout + result.stderr
    return json.loads((out / "summary.json").read_text())


def test_logins_at_the_rate_gated_and_their_mail_checks_counted_per_cluster(mail_stack: MailStack,  # noqa: F811
                                                                           tmp_path: Path) -> None:
    accounts, [earlier, _] = accounts_file(mail_stack, tmp_path, ACCOUNTS)
    leftover = app_password(mail_stack.account("lee@example.test"))   # not a run's: kept
    left = earlier.call("POST", "/api/app-passwords", json={"name": "loadtest imap", "scope": "imap"},
                        headers={"X-CSRFToken": earlier.csrf_token()})   # what a killed run would leave
    assert left.status_code == 201
    summary = locust_run(mail_stack, mail_stack.dovecot, tmp_path, accounts, "imap:p99<5s", "imap:errors<1%",
                         "imap:p99<0.001")
    logins, selects = summary["endpoints"]["imap"], summary["endpoints"]["imap-select"]
    assert logins["errors"] == 0 and selects["errors"] == 0 and selects["count"] == logins["count"], summary["endpoints"]
    assert RATE * 1.5 <= logins["count"] <= RATE * 3 + 1   # 3 s at 8/s from a random phase, after the set-up
    assert summary["endpoints"]["app-password"] == {**summary["endpoints"]["app-password"], "count": 2, "errors": 0}
    assert summary["endpoints"]["app-password-revoke"]["count"] == 3   # the leftover at the start, both at the end
    assert [v["ok"] for v in summary["slo"]] == [True, True, False] and summary["exit_code"] == 1
    # Dovecot's calls, never seen by the generator, from the node's own histogram: one per login, all 200.
    checks = summary["imap"]["backend"]["views"]["mail-check"]
    assert checks["clusters"]["blue"]["count"] == logins["count"] == checks["total"]["count"]
    assert checks["total"]["statuses"] == {"200": logins["count"]}
    low, high = checks["total"]["buckets"]["p99"]
    assert 0 <= low <= checks["total"]["p99"] <= high and checks["total"]["p50"] <= checks["total"]["p99"]
    assert summary["imap"]["backend"]["nodes"] == {"blue-1": "read"} and summary["imap"]["note"] is None
    lines = report.summary_lines(summary)
    assert node_metrics.title(summary["imap"]) in lines
    assert any(line.split()[:3] == ["mail-check", "blue", str(logins["count"])] for line in lines), lines
    # The run's app passwords are gone, the other's kept: none of the run's opens IMAP any more.
    names = [p["name"] for p in earlier.call("GET", "/api/app-passwords").json()["app_passwords"]]
    assert names == [] and mail_stack.imap("lee@example.test", leftover["password"]) == "OK"


def test_a_refused_login_is_a_failure(mail_stack: MailStack, tmp_path: Path) -> None:  # noqa: F811
    """A Dovecot whose own client secret the service refuses: every mail check is 401, every login NO."""
    run_dir = Path(tempfile.mkdtemp(prefix="loginsvc-dovecot-"))
    run_dir.chmod(0o711)
    relay = mail_stack.dovecot.relay_port
    refused = DovecotServer(run_dir, free_port(), free_port(), mail_stack.node.url, "dovecot", "not-the-secret", relay,
                            auth_failure_delay="0").start()
    try:
        accounts, _ = accounts_file(mail_stack, tmp_path, ("ned@example.test",))
        summary = locust_run(mail_stack, refused, tmp_path, accounts, "imap:errors<1%")
    finally:
        refused.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    logins = summary["endpoints"]["imap"]
    assert logins["count"] >= RATE and logins["errors"] == logins["count"] and "imap-select" not in summary["endpoints"]
    assert summary["exit_code"] == 1 and not summary["slo"][0]["ok"]
    with open(tmp_path / "locust_failures.csv", newline="") as failures:
        messages = [row["Error"] for row in csv.DictReader(failures) if row["Name"] == "imap"]
    assert messages and all("AUTHENTICATIONFAILED" in m for m in messages), messages
    assert summary["imap"]["backend"]["views"]["mail-check"]["total"]["statuses"] == {"401": logins["count"]}


def histogram(buckets: dict[float, float], **statuses: float) -> Histogram:
    return Histogram(dict(buckets), {k.lstrip("_"): v for k, v in statuses.items()})


def test_percentiles_as_histogram_quantile_estimates_them_within_their_bucket() -> None:
    calls = histogram({0.01: 50, 0.025: 90, 0.05: 100, math.inf: 100}, _200=100)
    assert node_metrics.quantile(calls, 0.5) == pytest.approx((10.0, 0.0, 10.0))
    assert node_metrics.quantile(calls, 0.95) == pytest.approx((37.5, 25.0, 50.0))
    assert node_metrics.quantile(calls, 0.99) == pytest.approx((47.5, 25.0, 50.0))
    slow = histogram({0.01: 1, 10.0: 1, math.inf: 100})
    assert node_metrics.quantile(slow, 0.99) == (10_000.0, 10_000.0, math.inf)   # beyond the last bound: at least it
    assert node_metrics.quantile(histogram({math.inf: 0}), 0.99) is None
    figures = node_metrics.figures(slow)
    assert figures["buckets"]["p99"] == [10_000.0, None] and figures["count"] == 100


TEXT = """# TYPE loginsvc_request_duration_seconds histogram
loginsvc_request_duration_seconds_bucket{le="0.01",method="POST",status="200",view="mail-check"} 3.0
loginsvc_request_duration_seconds_bucket{le="+Inf",method="POST",status="200",view="mail-check"} 4.0
loginsvc_request_duration_seconds_count{method="POST",status="200",view="mail-check"} 4.0
loginsvc_request_duration_seconds_sum{method="POST",status="200",view="mail-check"} 0.2
loginsvc_request_duration_seconds_bucket{le="0.01",method="POST",status="401",view="mail-check"} 1.0
loginsvc_request_duration_seconds_bucket{le="+Inf",method="POST",status="401",view="mail-check"} 1.0
loginsvc_request_duration_seconds_count{method="POST",status="401",view="mail-check"} 1.0
loginsvc_request_duration_seconds_sum{method="POST",status="401",view="mail-check"} 0.001
loginsvc_request_duration_seconds_bucket{le="+Inf",method="GET",status="200",view="session"} 9.0
loginsvc_request_duration_seconds_count{method="GET",status="200",view="session"} 9.0
# TYPE loginsvc_build_info gauge
loginsvc_build_info{cluster="green",node="green-1",release="dev"} 1.0
"""


def test_a_nodes_exposition_is_summed_over_its_label_sets_for_the_views_reported() -> None:
    reading = node_metrics.parse(TEXT)
    assert reading.cluster == "green" and set(reading.views) == {"mail-check"}
    assert reading.views["mail-check"] == histogram({0.01: 4.0, math.inf: 5.0}, _200=4.0, _401=1.0)


def test_the_window_is_the_difference_per_cluster_with_restarts_and_late_nodes_counted() -> None:
    def node(cluster: str | None, count: float) -> Reading:
        return Reading(cluster, {"mail-check": histogram({0.01: count, math.inf: count}, _200=count)})

    nodes = {name: (name.split("-")[0], f"http://127.0.0.1:{i}") for i, name in
             enumerate(("blue-1", "blue-2", "green-1", "green-2", "green-3"), 9000)}
    before = {"blue-1": node("blue", 10), "blue-2": node(None, 5), "green-1": node("green", 50)}
    after = {"blue-1": node("blue", 17), "blue-2": node(None, 8), "green-1": node("green", 4), "green-3": node("green", 2)}
    result = node_metrics.window_figures(nodes, before, after, {"green-2": "unreadable: refused"})
    clusters = result["views"]["mail-check"]["clusters"]
    assert {c: f["count"] for c, f in clusters.items()} == {"blue": 7 + 3, "green": 4 + 2}
    assert result["views"]["mail-check"]["total"]["statuses"] == {"200": 16}
    assert result["views"]["introspect"]["total"]["count"] == 0
    assert result["nodes"]["blue-1"] == "read" and result["nodes"]["green-2"] == "unreadable: refused"
    assert result["nodes"]["green-1"].startswith("restarted") and result["nodes"]["green-3"].startswith("read (not")
    header, rows = node_metrics.rows(result)
    assert header[:3] == ["", "calls", "statuses"]
    assert [row[:3] for row in rows] == [["mail-check blue", "10", "200:10"], ["mail-check green", "6", "200:6"],
                                         ["mail-check total", "16", "200:16"], ["introspect total", "0", "-"]]


@pytest.mark.parametrize("args, named", [
    (["--imap-per-second", "51"], "--imap-per-second"),
    (["--imap-per-second", "-1"], "--imap-per-second"),
    (["--imap-per-second", "many"], "--imap-per-second"),
    (["--imap-port", "1143"], "--imap-port"),
    (["--imap-per-second", "5", "--imap-port", "70000"], "--imap-port"),
])
def test_bad_imap_arguments_exit_2_with_one_line_naming_them(args: list[str], named: str) -> None:
    result = subprocess.run([sys.executable, "-m", "loadtests", "run", "--scenario", "steady", *args], cwd=ROOT,
                            env=without_database(), capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and named in lines[0], result.stderr


def test_imap_logins_need_this_machines_dovecot(mail_stack: MailStack, tmp_path: Path) -> None:  # noqa: F811
    accounts = tmp_path / "accounts.txt"
    accounts.write_text("lt-001@staging.example:a password\n")
    accounts.chmod(0o600)
    remote = subprocess.run([sys.executable, "-m", "loadtests", "run", "--scenario", "steady", "--remote", "--host",
                             "https://login.staging.example", "--accounts", str(accounts), "--imap-per-second", "5"],
                            cwd=ROOT, env=dict(without_database(), LOADTEST_CLIENT_SECRET="s"), capture_output=True,
                            text=True, timeout=60)
    assert remote.returncode == 2 and "--imap-per-second: only against this machine's" in remote.stderr, remote.stderr
    port = free_port()
    silent = subprocess.run([sys.executable, "-m", "loadtests", "run", "--scenario", "steady", "--host",
                             mail_stack.node.url, "--var-dir", str(spec_with(mail_stack, tmp_path)),
                             "--recovery-per-minute", "0", "--imap-per-second", "5", "--imap-port", str(port),
                             "--out", str(tmp_path / "out")], cwd=ROOT, env=without_database(), capture_output=True,
                            text=True, timeout=60)
    assert silent.returncode == 2 and f"nothing listens for IMAP at 127.0.0.1:{port}" in silent.stderr, silent.stderr
    assert not (tmp_path / "out").exists()
