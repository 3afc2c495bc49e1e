"""LOGINSVC_TEST_DELAY (loginsvc/delay.py): one environment slows chosen nodes, not their probes; production refuses it."""
from __future__ import annotations

import logging
import re
import time
from io import BytesIO

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from loginsvc import conf, delay
from loginsvc.health.middleware import ROUTES
from tests.support import Browser, manage
from tests.test_settings import STRONG_KEY, production_env

DELAY_MS = 300


def tiny_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"inner " + environ["PATH_INFO"].encode()]


def environ_for(path: str) -> dict[str, object]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "testserver",
            "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "wsgi.input": BytesIO(b""),
            "wsgi.url_scheme": "http", "wsgi.errors": BytesIO()}


def timed_call(app, path: str) -> tuple[float, bytes]:
    statuses: list[str] = []
    started = time.monotonic()
    body = b"".join(app(environ_for(path), lambda status, headers: statuses.append(status)))
    elapsed = time.monotonic() - started
    assert statuses == ["200 OK"]
    return elapsed, body


def configure(settings, raw: str, node: str, cluster: str) -> None:
    settings.LOGINSVC = {**settings.LOGINSVC, "TEST_DELAY": conf.load({"LOGINSVC_TEST_DELAY": raw})["TEST_DELAY"],
                         "NODE": node, "CLUSTER": cluster}


# --- Parsing -----------------------------------------------------------------------------------

def test_default_is_no_delay_for_anybody() -> None:
    delays = conf.load({})["TEST_DELAY"]
    assert delays == ()
    assert delay.seconds_for(delays, "green-1", "green") == 0


def test_pairs_are_parsed_and_a_nodes_own_entry_beats_its_clusters() -> None:
    delays = conf.load({"LOGINSVC_TEST_DELAY": " green=150, green-1=300 ,,blue-2=0"})["TEST_DELAY"]
    assert delays == (("green", 150), ("green-1", 300), ("blue-2", 0))
    assert delay.seconds_for(delays, "green-1", "green") == 0.3   # its own entry, not the cluster's 150
    assert delay.seconds_for(delays, "green-2", "green") == 0.15  # no entry of its own: the cluster's
    assert delay.seconds_for(delays, "blue-1", "blue") == 0       # neither
    assert delay.seconds_for(delays, "blue-2", "blue") == 0
    # A node's explicit 0 beats its cluster's delay too.
    assert delay.seconds_for(conf.load({"LOGINSVC_TEST_DELAY": "green=150,green-1=0"})["TEST_DELAY"],
                             "green-1", "green") == 0
    assert conf.load({"LOGINSVC_TEST_DELAY": "green-1=60000"})["TEST_DELAY"] == (("green-1", 60000),)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("green-1=abc", "'green-1=abc': 'abc' is not a whole number of milliseconds"),
        ("=5", "'=5' is not TARGET=MS (a node or cluster name, then milliseconds)"),
        ("green-1=-1", "'green-1=-1': milliseconds must be between 0 and 60000"),
        ("green-1=70000", "'green-1=70000': milliseconds must be between 0 and 60000"),
        ("green-1", "'green-1' is not TARGET=MS (a node or cluster name, then milliseconds)"),
        ("green-1=", "'green-1=': '' is not a whole number of milliseconds"),
        ("green-1=1.5", "'green-1=1.5': '1.5' is not a whole number of milliseconds"),
        ("green-1=+5", "'green-1=+5': '+5' is not a whole number of milliseconds"),
        ("green-1=²", "'green-1=²': '²' is not a whole number of milliseconds"),
        ("blue=10,green-1=5,green-1=6", "'green-1' is given twice"),
    ],
)
def test_a_bad_value_is_one_message_naming_the_key_and_the_entry(raw: str, reason: str) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        conf.load({"LOGINSVC_TEST_DELAY": raw})
    assert str(caught.value) == f"LOGINSVC_TEST_DELAY: {reason} (got {raw!r})"


# --- Production refuses it ---------------------------------------------------------------------

def test_production_refuses_a_test_delay_at_start_up(tmp_path) -> None:
    result = manage(production_env(tmp_path, LOGINSVC_TEST_DELAY="green-1=300"), "check", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert lines == ["configuration error: LOGINSVC_TEST_DELAY: a test-only setting, refused in production"]
    assert STRONG_KEY not in result.stderr


def test_production_accepts_an_empty_test_delay(tmp_path) -> None:
    """Only a delay is refused: the variable set but empty (as a shared environment may have it) is none."""
    result = manage(production_env(tmp_path, LOGINSVC_TEST_DELAY=" , "), "check", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- The wrapper ---------------------------------------------------------------------------------

def test_no_delay_for_this_node_returns_the_application_itself(settings) -> None:
    for raw, node, cluster in (("", "green-1", "green"),                     # nothing set
                               ("green-1=300,green=150", "blue-1", "blue"),  # other nodes and clusters
                               ("green=150,green-1=0", "green-1", "green")):  # its own 0 beats its cluster
        configure(settings, raw, node, cluster)
        assert delay.wrap(tiny_app) is tiny_app, (raw, node)


@pytest.mark.parametrize(("raw", "node"), [(f"green-1={DELAY_MS}", "green-1"), (f"green={DELAY_MS}", "green-2")])
def test_every_answer_waits_except_the_probes(settings, caplog, raw: str, node: str) -> None:
    configure(settings, raw, node, "green")
    with caplog.at_level(logging.WARNING, logger="loginsvc.delay"):
        app = delay.wrap(tiny_app)
    assert isinstance(app, delay.DelayedApp) and app.inner is tiny_app
    assert app.seconds == DELAY_MS / 1000
    assert app.exempt == {"/healthz", "/readyz", "/metrics"} == set(ROUTES)
    [record] = [r for r in caplog.records if r.name == "loginsvc.delay"]
    assert record.levelno == logging.WARNING
    assert f"node {node} (cluster green) delays every answer by {DELAY_MS} ms" in record.getMessage()

    for path in ("/api/session", "/oidc/userinfo/", "/login/", "/healthz/", "/"):
        elapsed, body = timed_call(app, path)
        assert elapsed >= DELAY_MS / 1000, path
        assert body == b"inner " + path.encode()
    for path in ROUTES:
        elapsed, body = timed_call(app, path)
        assert elapsed < DELAY_MS / 1000 / 2, path
        assert body == b"inner " + path.encode()


# --- Real nodes: one environment for the stack, one node slowed, fast path included ----------------

def _quickest(url: str, tries: int = 3, **kwargs: object) -> float:
    best = float("inf")
    for _ in range(tries):
        started = time.monotonic()
        response = requests.get(url, timeout=10, allow_redirects=False, **kwargs)
        best = min(best, time.monotonic() - started)
        assert response.status_code == 200, (url, response.status_code)
    return best


def test_one_environment_slows_one_node_of_a_cluster_and_it_stays_healthy(stack) -> None:
    slowed = stack("green-1", "green", LOGINSVC_TEST_DELAY=f"green-1={DELAY_MS}")
    other = stack("green-2", "green", LOGINSVC_TEST_DELAY=f"green-1={DELAY_MS}")

    for node, is_slowed in ((slowed, True), (other, False)):
        browser = Browser(node.url)
        browser.csrf_token()  # from now on the anonymous GET /api/session is the fast path's
        session = _quickest(node.url + "/api/session", cookies=browser.cookies)
        assert (session >= DELAY_MS / 1000) is is_slowed, (node.name, session)
        for path in ROUTES:
            assert _quickest(node.url + path) < DELAY_MS / 1000, (node.name, path)

        metrics = requests.get(node.url + "/metrics", timeout=10).text
        served = re.search(r'^loginsvc_session_fast_path_total\{result="served"\} (\S+)$', metrics, re.M)
        assert served and float(served.group(1)) >= 3, node.name  # the delayed answers were the fast path's
        assert ("LOGINSVC_TEST_DELAY: node green-1 (cluster green) delays every answer by 300 ms"
                in node.log()) is is_slowed
    assert "LOGINSVC_TEST_DELAY" not in other.log()
