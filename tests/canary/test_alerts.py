"""Alerts that cannot be silenced: a real router, real demo backends, real local receivers (a webhook that first
answers 429 with Retry-After, one that is down and comes back, an SMTP server), a router restart while alerts are
still owed: nothing lost, nothing doubled."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from canary.alerts.alerting import Alerting, summary
from canary.alerts.outbox import Outbox, backoff
from canary.alerts.pipelines import Pipeline, PipelineError, fingerprint, retry_after, webhook_body
from canary.alerts.settings import from_environment
from tests.canary.alert_receivers import Taking, five_alerts_through, name_of
from tests.canary.conftest import FAST, ROOT, TOKEN, toml_config
from tests.plugin import free_port
from tests.support import Mailbox, Webhook, wait_for


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


def alerts_cli(router: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "canary", "alerts", "--admin", router.admin_url, *args], cwd=ROOT,
                          env={"CANARY_ADMIN_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=30)


def test_a_killed_cluster_reaches_every_receiver_once_across_a_router_restart(
        tmp_path: Path, backends: Any, router_factory: Any, smtp: tuple[Mailbox, int]) -> None:
    mailbox, smtp_port = smtp
    throttling, late = Webhook(refuse_first=1).start(), Webhook()   # `late` is down until after the restart
    blue, green = backends("blue", 1), backends("green", 2)
    config = toml_config({"blue": blue, "green": green}, **FAST)
    env = {"ALERT_WEBHOOK_URL": f"{throttling.url},{late.url}", "ALERT_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
           "ALERT_EMAIL_TO": "noc@example.test", "LOGINSVC_VAR_DIR": str(tmp_path / "var")}
    router = router_factory(config=config, env=env)
    router.ramp(50)
    for backend in green:
        backend.kill()
    wait_for(lambda: any("green: 2 nodes down, failover to blue" in t for t in throttling.texts()), 15,
             "the cascade at the throttling webhook")
    assert throttling.statuses[:2] == [429, 200]
    assert throttling.times[1] - throttling.times[0] >= 0.9          # its Retry-After: 1 was honoured
    wait_for(lambda: any("green: 2 nodes down, failover to blue" in m for m in mailbox.messages), 10, "the email")
    cascade = next(b for b in throttling.bodies if "failover to blue" in b["text"])
    assert cascade["alerts"][0]["labels"] == {"alertname": "cascade", "severity": "critical", "cluster": "green"}
    journal = [json.loads(line) for line in (tmp_path / "var" / "alerts" / "journal.jsonl").read_text().splitlines()]
    assert sorted(e["node"] for e in journal if e["kind"] == "node_down") == ["green-1", "green-2"]   # the detail
    listed = alerts_cli(router, "--json")
    assert listed.returncode == 0, listed.stderr
    owed = json.loads(listed.stdout)["pipelines"]
    late_name = name_of(late.url)
    assert owed[late_name]["owed"] >= 1 and owed[late_name]["delivered"] == 0, owed

    router.stop(signal.SIGTERM)       # a restart while `late` is still owed the alert
    router.proc.wait(10)
    late.start()
    router.start()
    wait_for(lambda: any("failover to blue" in t for t in late.texts()), 20, "the owed alert after the restart")
    time.sleep(1.5)                   # a second delivery, if there were one, would have come by now
    assert sum("failover to blue" in t for t in late.texts()) == 1
    assert sum("failover to blue" in t for t in throttling.texts()) == 1
    assert sum("failover to blue" in m for m in mailbox.messages) == 1
    shown = alerts_cli(router)
    assert "green: 2 nodes down, failover to blue" in shown.stdout and "breaker=closed" in shown.stdout, shown.stdout
    throttling.stop()
    late.stop()


def test_alerts_test_reports_each_pipeline(tmp_path: Path, backends: Any, router_factory: Any) -> None:
    up, down = Webhook().start(), Webhook()
    blue, green = backends("blue", 1), backends("green", 1)
    router = router_factory(config=toml_config({"blue": blue, "green": green}),
                            env={"ALERT_WEBHOOK_URL": f"{up.url},{down.url}", "LOGINSVC_VAR_DIR": str(tmp_path)})
    result = alerts_cli(router, "test")
    assert result.returncode == 1, result
    lines = result.stdout.splitlines()
    assert any(name_of(up.url) in line and line.rstrip().endswith("delivered") for line in lines), result.stdout
    assert any(name_of(down.url) in line and "NOT delivered" in line for line in lines), result.stdout
    assert up.bodies[0]["alerts"][0]["labels"]["alertname"] == "test"
    rollback = router.api("POST", "/api/rollback")
    assert rollback["percent"] == 0
    wait_for(lambda: any(t.startswith("[critical] rollback: green's share set to 0 %") for t in up.texts()), 10,
             "the rollback alert")
    up.stop()


@pytest.mark.parametrize("environ, line", [
    ({"ALERT_WEBHOOK_URL": "ftp://user:s3cret-pw@x/s3cret-path"},
     "ALERT_WEBHOOK_URL: the scheme must be http:// or https://"),
    ({"ALERT_SMTP_URL": "smtps://user:s3cret-pw@x?starttls=1", "ALERT_EMAIL_TO": "noc@example.test"},
     "ALERT_SMTP_URL: starttls=1 with smtps:// (TLS from the first byte already): use one of them"),
])
def test_a_bad_alert_setting_stops_the_router_with_one_line(tmp_path: Path, environ: dict[str, str], line: str) -> None:
    """One line naming the variable and the problem, never the value: it may hold a secret."""
    result = subprocess.run([sys.executable, "-m", "canary", "serve", "--cluster", "blue=127.0.0.1:9",
                             "--cluster", "green=127.0.0.1:10", "--listen", f"127.0.0.1:{free_port()}",
                             "--admin", f"127.0.0.1:{free_port()}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30, env={**environ, "CANARY_ADMIN_TOKEN": TOKEN,
                                             "PATH": "/usr/bin:/bin", "LOGINSVC_VAR_DIR": str(tmp_path)})
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"canary: error: {line}"], result.stderr


@pytest.mark.parametrize("environ, message", [
    ({"ALERT_SMTP_URL": "smtp://127.0.0.1:25"}, "ALERT_EMAIL_TO"),
    ({"ALERT_SMTP_URL": "http://x", "ALERT_EMAIL_TO": "a@b"}, "ALERT_SMTP_URL"),
    ({"ALERT_WEBHOOK_URL": "http://"}, "ALERT_WEBHOOK_URL"),
])
def test_pipeline_settings_are_checked(environ: dict[str, str], message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        from_environment(environ)
    dsn = "https://public@sentry.example/1"
    assert [p.name for p in from_environment({"ALERT_WEBHOOK_URL": "http://a:1/x, https://b/y", "SENTRY_DSN": dsn})] \
        == ["webhook a#" + fingerprint("http://a:1/x"), "webhook b#" + fingerprint("https://b/y"), "sentry"]


def test_retry_after_backoff_and_breaker() -> None:
    assert retry_after("7") == 7.0 and retry_after(None) is None and retry_after("soon") is None
    assert 0 <= retry_after("Wed, 21 Oct 2015 07:28:00 GMT") < 1   # a date in the past: now
    assert [backoff(n, rng=lambda: 1.0) for n in (1, 2, 3, 20)] == [1.0, 2.0, 4.0, 300.0]
    assert backoff(3, rng=lambda: 0.0) == 2.0                      # jitter: half to all of the delay
    pipeline = Refusing("p")                                      # the breaker is every pipeline's
    for i in range(5):
        assert pipeline.usable(100.0 + i)
        pipeline.record(False, 100.0 + i)
    assert not pipeline.usable(110.0) and pipeline.usable(135.0)   # open for 30 s, then one try
    pipeline.record(True, 135.0)
    assert pipeline.breaker == "closed" and pipeline.failures == 0


class Refusing(Pipeline):
    def send(self, alert: Any) -> tuple[bool, str, float | None]:
        return False, "HTTP 500", None


def test_two_routers_fold_the_same_event_and_deliver_it_once(tmp_path: Path) -> None:
    import asyncio

    taking = [Taking("hook"), Taking("hook")]
    routers = [Alerting(tmp_path, [taking[i]], owner=f"router-{i}") for i in range(2)]
    for router in routers:   # both see green-1 go down
        router.emit("node_down", "blue/blue-1 failed its health checks", "blue", "blue-1", group=False)
    assert len(Outbox(tmp_path).snapshot()) == 1

    async def both() -> None:
        await asyncio.gather(*(r.deliver_due() for r in routers))
    asyncio.run(both())
    assert sum(len(t.taken) for t in taking) == 1


def test_a_refusing_pipeline_is_reported_through_the_others(tmp_path: Path) -> None:
    refusing, taking = Refusing("bad hook"), Taking("mail")
    five_alerts_through(tmp_path, [refusing, taking])
    meta = [a for a in taking.taken if a["kind"] == "pipeline_failing"]
    assert len(meta) == 1 and meta[0]["text"].startswith("bad hook has refused 5 alerts in 2 min (last: HTTP 500)")
    owed = [a for a in Outbox(tmp_path).snapshot() if a["deliveries"].get("bad hook", {}).get("state") == "pending"]
    assert len(owed) == 5                      # nothing given up: owed until the pipeline takes it
    assert "bad hook" not in next(a for a in Outbox(tmp_path).snapshot() if a["kind"] == "pipeline_failing")["deliveries"]


def test_a_cascade_is_one_line_and_the_webhook_body_suits_slack_and_alertmanager() -> None:
    events = [{"kind": "node_down", "text": "x"}, {"kind": "node_down", "text": "y"},
              {"kind": "failover", "text": "green unavailable: all its traffic, pinned users too, goes to blue"}]
    assert summary("green", events) == "green: 2 nodes down, failover to blue"
    body = webhook_body({"id": "abc", "fold_key": "k", "kind": "failover", "severity": "critical", "text": "t",
                         "cluster": "green", "node": None, "at": 0.0, "figures": {"nodes": 2}})
    assert body["text"].startswith("[critical] t — green at 1970-01-01T00:00:00Z")
    assert body["alerts"][0]["labels"] == {"alertname": "failover", "severity": "critical", "cluster": "green"}
    assert body["alerts"][0]["startsAt"] == "1970-01-01T00:00:00Z" and body["status"] == "firing"


def test_two_routers_on_different_machines_share_redis_and_deliver_each_alert_once(
        tmp_path: Path, backends: Any, router_factory: Any, redis_url: str) -> None:
    """Two routers with their own folders (as on two machines) and one Redis: both see green go down, the
    webhook and the mailbox each get the cascade once."""
    hook = Webhook().start()
    blue, green = backends("blue", 1), backends("green", 1)
    config = toml_config({"blue": blue, "green": green}, **FAST)
    routers = [router_factory(config=config, args=["--redis", redis_url],
                              env={"ALERT_WEBHOOK_URL": hook.url, "LOGINSVC_VAR_DIR": str(tmp_path / f"machine-{i}")})
               for i in range(2)]
    green[0].kill()
    wait_for(lambda: any("green" in t and "failover to blue" in t for t in hook.texts()), 15, "the cascade")
    for i in range(2):      # each router saw it: both journals have the event
        wait_for(lambda: "failover" in (tmp_path / f"machine-{i}" / "alerts" / "journal.jsonl").read_text(), 5,
                 f"router {i}'s journal")
    time.sleep(1.5)         # a second delivery, if there were one, would have come by now
    assert sum("failover to blue" in t for t in hook.texts()) == 1, hook.texts()
    listed = [json.loads(alerts_cli(r, "--json").stdout)["alerts"] for r in routers]
    assert listed[0] == listed[1]            # one outbox, seen the same from both
    assert not (tmp_path / "machine-0" / "alerts" / "outbox.json").exists()
    hook.stop()
