"""A pipeline's secrets (a webhook URL's path, query and userinfo, an SMTP password) never reach what people see:
logs, alert texts, `GET /api/alerts`, `canary alerts`, the outbox, the journal, metrics (ASVS 7.1.1, 8.3.4). Pipelines
are named by host and a fingerprint, an outbox written with the old names is carried over, and a webhook's
redirect is a failure, never followed."""
from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from canary.alerts.alerting import Alerting
from canary.alerts.outbox import Outbox, RedisOutbox
from canary.alerts.pipelines import HIDDEN, PipelineError, fingerprint
from canary.alerts.settings import from_environment
from tests.canary.alert_receivers import (
    ALERT, SMTP_PASSWORD, SMTP_USER, Recording, Redirecting, make_ca, name_of, smtp_server,
)
from tests.canary.conftest import ROOT, TOKEN
from tests.support import wait_for

HOOK_USER, HOOK_PASSWORD, PATH_SECRET, QUERY_SECRET = "hookuser", "HookPass-91x", "PathSecret-7f3a", "QuerySecret-c2"
BAD_PATH_SECRET, BAD_QUERY_SECRET = "BadPathSecret-e5", "BadQuerySecret-0d"

def fetch(url: str, method: str = "GET") -> str:
    """An admin call; a test alert waits up to 10 s for a pipeline whose breaker is open."""
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.read().decode()


def test_no_pipeline_secret_reaches_logs_alerts_api_outbox_or_metrics(tmp_path: Path, router_factory: Any) -> None:
    """A webhook with user:password, a secret path and query that takes alerts, one with a secret path and query
    that refuses them (HTTP 500: after 5 refusals it is reported through the others), email over STARTTLS with a
    password: every secret is absent from every place a person or another system reads."""
    ca = make_ca(tmp_path)
    good, bad = Recording(200).start(), Recording(500).start()
    good_url = (f"http://{HOOK_USER}:{HOOK_PASSWORD}@127.0.0.1:{good.port}/services/T0/B0/{PATH_SECRET}"
                f"?token={QUERY_SECRET}")
    bad_url = f"http://127.0.0.1:{bad.port}/hooks/{BAD_PATH_SECRET}?sig={BAD_QUERY_SECRET}"
    with smtp_server("starttls", ca) as (mailbox, smtp_port):
        env = {"ALERT_WEBHOOK_URL": f"{good_url},{bad_url}", "ALERT_EMAIL_TO": "noc@example.test",
               "ALERT_SMTP_URL": f"smtp://{SMTP_USER}:{quote(SMTP_PASSWORD, safe='')}@127.0.0.1:{smtp_port}"
                                 f"?starttls=1&cafile={quote(str(ca.cafile))}",
               "LOGINSVC_VAR_DIR": str(tmp_path / "var")}
        router = router_factory(args=["--cluster", "blue=127.0.0.1:9", "--cluster", "green=127.0.0.1:10"], env=env)
        while len(bad.requests) < 5:               # test alerts: successes (good, email) and failures (bad)
            fetch(router.admin_url + "/api/alerts/test", "POST")
        failing = f"{name_of(bad_url)} has refused"
        wait_for(lambda: any(failing in t for t in good.texts()), 10, "the bad webhook reported through the good one")
        wait_for(lambda: any(failing in m for m in mailbox.messages), 10, "... and by email")
        listed = subprocess.run([sys.executable, "-m", "canary", "alerts", "--admin", router.admin_url], cwd=ROOT,
                                env={"CANARY_ADMIN_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}, capture_output=True,
                                text=True, timeout=30)
        api = fetch(router.admin_url + "/api/alerts")
        seen = {"router log": router.stdout.read_text(), "mails": "".join(mailbox.messages),
                "webhook bodies": "".join(body.decode() for *_, body in good.requests), "GET /api/alerts": api,
                "GET /api/status": fetch(router.admin_url + "/api/status"),
                "metrics": fetch(router.admin_url + "/metrics"),
                "canary alerts": listed.stdout + listed.stderr,
                "outbox": (tmp_path / "var" / "alerts" / "outbox.json").read_text(),
                "journal": (tmp_path / "var" / "alerts" / "journal.jsonl").read_text()}
        assert set(json.loads(api)["pipelines"]) == {name_of(good_url), name_of(bad_url),
                                                     f"email 127.0.0.1:{smtp_port}"}
        assert name_of(good_url).startswith("webhook 127.0.0.1#") and name_of(bad_url) in seen["canary alerts"]
        assert mailbox.logins[0] == (SMTP_USER, SMTP_PASSWORD, True)
    credentials = base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode()
    assert {(path, authorization) for path, authorization, _ in good.requests} == {
        (f"/services/T0/B0/{PATH_SECRET}?token={QUERY_SECRET}", f"Basic {credentials}")}   # userinfo as Basic auth
    for secret in (HOOK_PASSWORD, PATH_SECRET, QUERY_SECRET, BAD_PATH_SECRET, BAD_QUERY_SECRET, SMTP_PASSWORD,
                   quote(SMTP_PASSWORD, safe=""), credentials):
        leaks = [where for where, text in seen.items() if secret in text]
        assert not leaks, f"{secret!r} in {leaks}"
    good.stop()
    bad.stop()


def old_alert(n: int, text: str, kind: str = "node_down") -> dict[str, Any]:
    return {"id": f"old-{n}", "fold_key": f"{kind}:blue:", "kind": kind, "severity": "warning", "text": text,
            "cluster": None, "node": None, "at": 1.0, "count": 1, "figures": {},
            "events": [{"kind": kind, "node": None, "text": text, "at": 1.0}]}


@pytest.mark.parametrize("store", ["file", "redis"])
def test_an_outbox_with_the_old_names_is_carried_over_nothing_lost_nothing_resent(
        tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    """An outbox written by the older version (deliveries keyed `webhook HOST:PORT/PATH`): the delivered alert is
    not sent again, the owed ones are sent once, and afterwards no record holds the secret; a webhook no longer
    configured (its URL rotated) keeps its owed deliveries under a redacted name, its old errors hidden."""
    hook = Recording(200).start()
    url = f"http://127.0.0.1:{hook.port}/services/T0/B0/{PATH_SECRET}"
    legacy, gone = f"webhook 127.0.0.1:{hook.port}/services/T0/B0/{PATH_SECRET}", "webhook old.example:/x/GoneSecret-42"
    if store == "redis":
        redis_url = request.getfixturevalue("redis_url")
        outbox: Outbox = RedisOutbox(redis_url, "canary:test:alert-outbox", tmp_path)

        def stored() -> str:
            return redis.Redis.from_url(redis_url).get("canary:test:alert-outbox").decode()
    else:
        outbox = Outbox(tmp_path)

        def stored() -> str:
            return outbox.path.read_text()
    outbox.add(old_alert(1, "blue/blue-1 failed its health checks"), [legacy, gone])
    outbox.report("old-1", legacy, True)                                  # delivered before the upgrade
    outbox.add(old_alert(2, "blue/blue-2 failed its health checks"), [legacy, gone])
    outbox.report("old-2", legacy, False, f"InvalidURL: '/services/T0/B0/{PATH_SECRET}'", now=0.0)   # owed, due
    outbox.add(old_alert(3, f"{gone} has refused 5 alerts in 2 min (last: nonnumeric port: 'GonePass-3@old')",
                         "pipeline_failing"), [legacy])
    outbox.add(old_alert(4, f"{legacy} has refused 5 alerts in 2 min (last: HTTP 500)", "pipeline_failing"), [gone])
    outbox.report("old-4", gone, False, "nonnumeric port: 'GonePass-3@old'")
    assert PATH_SECRET in stored()

    for _ in range(2):                                       # a restart after the first: nothing sent again
        alerting = Alerting(tmp_path, from_environment({"ALERT_WEBHOOK_URL": url}), outbox=outbox)
        asyncio.run(alerting.deliver_due())
    assert sorted(json.loads(body)["alerts"][0]["fingerprint"] for *_, body in hook.requests) == ["old-2", "old-3"]
    text = stored()
    for secret in (PATH_SECRET, "GoneSecret-42", "GonePass-3"):
        assert secret not in text and secret not in json.dumps(alerting.status())
    renamed, redacted = name_of(url), f"webhook old.example#{fingerprint(gone)}"
    alerts = {a["id"]: a for a in outbox.snapshot()}
    assert {n: sorted(alerts[f"old-{n}"]["deliveries"]) for n in (1, 2, 3, 4)} == {
        1: sorted([renamed, redacted]), 2: sorted([renamed, redacted]), 3: [renamed], 4: [redacted]}
    assert alerts["old-4"]["text"] == f"{renamed} has refused 5 alerts in 2 min (last: HTTP 500)"
    assert alerts["old-3"]["text"] == (f"{redacted} has refused 5 alerts in 2 min"
                                       " (last error hidden: its URL is no longer configured)")
    assert alerts["old-4"]["deliveries"][redacted]["state"] == "pending"    # still owed, should the URL come back
    hook.stop()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_rfc9110_15_4_a_webhook_redirect_is_a_failure_and_not_followed(status: int) -> None:
    """The alert goes to the configured URL only: a 3xx is reported as that pipeline's failure, and the server
    it points to receives nothing (no POST, no GET)."""
    elsewhere = Recording(200).start()
    redirecting = Redirecting(status, f"http://127.0.0.1:{elsewhere.port}/{PATH_SECRET}").start()
    [pipeline] = from_environment({"ALERT_WEBHOOK_URL": f"http://127.0.0.1:{redirecting.port}/hook"})
    ok, error, wait = pipeline.deliver(ALERT)
    assert (ok, error, wait) == (False, f"HTTP {status}: a redirect, not followed", None)
    assert redirecting.hits == 1 and elsewhere.requests == []
    redirecting.stop()
    elsewhere.stop()


def test_an_error_that_quotes_the_url_is_scrubbed() -> None:
    """http.client quotes the path of a URL it refuses: the error reported holds none of it."""
    [pipeline] = from_environment({"ALERT_WEBHOOK_URL": f"http://127.0.0.1:9/{PATH_SECRET} x?token={QUERY_SECRET}"})
    ok, error, _ = pipeline.deliver(ALERT)
    assert not ok and HIDDEN in error and PATH_SECRET not in error and QUERY_SECRET not in error, error


def test_names_tell_webhooks_apart_hold_no_secret_and_survive_restarts() -> None:
    urls = [f"https://u:{HOOK_PASSWORD}@hooks.example/services/{PATH_SECRET}", "https://hooks.example/services/B",
            f"https://hooks.example/services/B?token={QUERY_SECRET}"]
    names = [name_of(u) for u in urls]
    assert len(set(names)) == 3 and all(n.startswith("webhook hooks.example#") for n in names)
    assert names == [p.name for p in from_environment({"ALERT_WEBHOOK_URL": ",".join(urls)})]   # stable
    assert not any(s in n for n in names for s in (HOOK_PASSWORD, PATH_SECRET, QUERY_SECRET))
    assert name_of(urls[0].replace(HOOK_PASSWORD, "another")) == names[0]   # the password is not hashed


@pytest.mark.parametrize("environ, message", [
    ({"ALERT_WEBHOOK_URL": f"ftp://u:{HOOK_PASSWORD}@x/{PATH_SECRET}"},
     "ALERT_WEBHOOK_URL: the scheme must be http:// or https://"),
    ({"ALERT_WEBHOOK_URL": f"https://ok.example/a, http://u:{HOOK_PASSWORD}@x:99999/{PATH_SECRET}"},
     "ALERT_WEBHOOK_URL (URL 2 of 2): the port is not a number from 1 to 65535"),
    ({"ALERT_WEBHOOK_URL": f"http:///{PATH_SECRET}"}, "ALERT_WEBHOOK_URL: no host"),
    ({"SENTRY_DSN": f"https://{PATH_SECRET}@sentry.example/not-a-project"},
     "SENTRY_DSN: not a Sentry DSN (https://KEY@HOST/PROJECT)"),
])
def test_a_bad_webhook_or_dsn_is_one_error_naming_the_variable_never_the_value(environ: dict[str, str],
                                                                               message: str) -> None:
    with pytest.raises(PipelineError) as raised:
        from_environment(environ)
    assert str(raised.value) == message
