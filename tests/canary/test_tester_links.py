"""Testers' pins through a real router and real backends: a one-time link pins one browser to a cluster."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_for

from .conftest import FAST, PIN_SECRET, ROOT, TOKEN, pin_of, toml_config


@pytest.fixture
def clusters(backends) -> dict[str, Any]:
    return {"blue": backends("blue", 1), "green": backends("green", 1)}


@pytest.fixture
def router(clusters, router_factory):
    return router_factory(config=toml_config(clusters, public_origin="https://login.example.test", **FAST))


def make_link(r, cluster: str, ttl: Any = "1h") -> dict[str, Any]:
    return r.api("POST", "/api/tester-links", {"cluster": cluster, "ttl": ttl})


def open_link(r, url: str) -> tuple[int, dict[str, str], bytes]:
    """What a tester does: the page (GET), then its button (POST)."""
    assert url.startswith("https://login.example.test/_canary/tester/"), url
    path = url.removeprefix("https://login.example.test")
    status, headers, body = r.get(path)
    if status != 200:
        return status, headers, body
    assert b'<form method="post">' in body and "set-cookie" not in headers, (headers, body)
    return r.get(path, method="POST", headers={"Content-Length": "0"})


def served_by(r, cookie: str | None, n: int = 10) -> list[str]:
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    out = []
    try:
        for _ in range(n):
            st, h, _ = r.get("/page", cookie=cookie, conn=c)
            assert st == 200
            out.append(h["x-served-by"].split("/")[0])
    finally:
        c.close()
    return out


def metric(r, name: str, cluster: str) -> float:
    import urllib.request
    text = urllib.request.urlopen(r.admin_url + "/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{cluster="{cluster}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_link_pins_a_browser_against_the_share_once_and_apart_from_the_analysis(router) -> None:
    router.ramp(0)
    link = make_link(router, "green")
    assert link["cluster"] == "green" and link["id"] in link["url"]
    status, headers, body = open_link(router, link["url"])
    assert status == 303 and headers["location"] == "/", (status, headers, body)
    assert headers["cache-control"] == "no-store" and headers["referrer-policy"] == "no-referrer"
    tester = pin_of(headers)
    assert tester is not None and tester.startswith("canary_pin=T.") and "HttpOnly" in headers["set-cookie"]
    assert served_by(router, tester, 12) == ["green"] * 12          # share 0 %: nobody else goes there
    assert served_by(router, None, 5) == ["blue"] * 5
    # one time: a second opening (another browser, or the same one) changes nothing
    again, headers, _ = open_link(router, link["url"])
    assert again == 410 and "set-cookie" not in headers
    # apart: counted as testers' requests, not in the duration histogram the SLOs and analysis read
    assert metric(router, "canary_tester_requests_total", "green") == 12
    assert metric(router, "canary_request_duration_seconds_count", "green") == 0
    assert metric(router, "canary_request_duration_seconds_count", "blue") == 5
    assert router.api("GET", "/api/live")["clusters"]["green"] == []
    links = router.api("GET", "/api/tester-links")["links"]
    assert [(x["id"], x["cluster"], bool(x["opened_at"])) for x in links] == [(link["id"], "green", True)]
    assert "url" not in links[0]
    # the access log labels them
    wait_for(lambda: "bucket=tester" in router.stdout.read_text(), 5, "access log line of a tester")
    lines = [x for x in router.stdout.read_text().splitlines() if "bucket=tester" in x]
    assert len(lines) == 12 and all("green/" in x for x in lines), lines
    log = router.stdout.read_text()        # the link's tag (its secret part) is never logged
    assert '"POST /_canary/tester/" 303' in log and link["url"].rsplit(".", 1)[1] not in log


def test_the_page_and_previews_never_use_the_link_up(router) -> None:
    """Chat and mail previews fetch a URL (GET, HEAD): only the page's POST claims the link."""
    link = make_link(router, "green")
    path = link["url"].removeprefix("https://login.example.test")
    for method in ("GET", "HEAD", "GET"):
        status, headers, body = router.get(path, method=method)
        assert status == 200 and "set-cookie" not in headers, (method, status, headers)
        assert headers["content-type"] == "text/html; charset=utf-8" and "form-action 'self'" in \
            headers["content-security-policy"] and headers["cache-control"] == "no-store"
        assert (b"cluster <b>green</b>" in body) == (method == "GET"), body
    assert router.get(path, method="PUT", headers={"Content-Length": "0"})[0] == 405
    assert router.get(path, method="POST", body=b"x=1")[0] == 400                # the button posts nothing
    status, headers, _ = router.get(path, method="POST", headers={"Content-Length": "0"})
    assert status == 303 and pin_of(headers).startswith("canary_pin=T.")
    assert router.get(path)[0] == 410 and router.get(path, method="POST", headers={"Content-Length": "0"})[0] == 410


def test_another_router_honours_the_pin_before_it_has_seen_the_opening(clusters, router_factory,
                                                                       tmp_path: Path) -> None:
    """Two routers on one state file: the pin set by one is a tester's pin on the other at once."""
    config = toml_config(clusters, public_origin="https://login.example.test", **FAST)
    first = router_factory(config=config)
    first.ramp(0)
    link = make_link(first, "green")
    second = router_factory(config=config)            # same working folder: the same state file
    _, headers, _ = open_link(first, link["url"])
    tester = pin_of(headers)
    status, headers, _ = second.get("/page", cookie=tester)
    assert status == 200 and headers["x-served-by"].startswith("green/") and "set-cookie" not in headers


def test_a_stable_tester_stays_on_stable_at_full_share(router) -> None:
    router.ramp(100)
    status, headers, _ = open_link(router, make_link(router, "blue")["url"])
    assert status == 303
    assert served_by(router, pin_of(headers), 8) == ["blue"] * 8
    assert served_by(router, None, 4) == ["green"] * 4


def test_health_wins_a_tester_fails_over_when_its_cluster_dies(router, clusters) -> None:
    router.ramp(0)
    _, headers, _ = open_link(router, make_link(router, "green")["url"])
    tester = pin_of(headers)
    assert served_by(router, tester, 3) == ["green"] * 3
    clusters["green"][0].kill()
    router.wait_status(lambda s: not s["clusters"]["green"]["available"])
    assert served_by(router, tester, 5) == ["blue"] * 5


def test_forged_and_ended_links_get_410_and_an_ended_pin_is_placed_by_the_share(router) -> None:
    router.ramp(0)
    link = make_link(router, "green")
    forged = link["url"][:-3] + ("AAA" if not link["url"].endswith("AAA") else "BBB")
    assert open_link(router, forged)[0] == 410
    _, headers, _ = open_link(router, link["url"])
    tester = pin_of(headers)
    assert served_by(router, tester, 2) == ["green"] * 2
    assert router.api("DELETE", f"/api/tester-links/{link['id']}")["ended"] == [link["id"]]
    status, headers, _ = router.get("/page", cookie=tester)
    assert status == 200 and headers["x-served-by"].startswith("blue/")
    fresh = pin_of(headers)
    assert fresh is not None and not fresh.startswith("canary_pin=T."), headers   # an ordinary pin replaces it
    # an unopened link that is ended cannot be opened any more
    unopened = make_link(router, "green")
    with pytest.raises(urllib.error.HTTPError) as refused:      # every link only when asked so
        router.api("DELETE", "/api/tester-links/")
    assert refused.value.code == 405
    router.api("DELETE", "/api/tester-links")
    assert open_link(router, unopened["url"])[0] == 410
    assert router.api("GET", "/api/tester-links")["links"] == []


def test_rotating_the_pin_key_without_a_fallback_ends_tester_pins_and_links(clusters, router_factory,
                                                                            tmp_path: Path) -> None:
    config = toml_config(clusters, public_origin="https://login.example.test", **FAST)
    first = router_factory(config=config)
    first.ramp(0)
    _, headers, _ = open_link(first, make_link(first, "green")["url"])
    tester = pin_of(headers)
    unopened = make_link(first, "green")
    assert served_by(first, tester, 2) == ["green"] * 2
    first.stop()
    rotated = router_factory(config=config, env={"CANARY_PIN_SECRET": "r" * 40})   # same state file, new key
    assert len(rotated.api("GET", "/api/tester-links")["links"]) == 2           # the links are still there
    status, headers, _ = rotated.get("/page", cookie=tester)
    assert headers["x-served-by"].startswith("blue/") and not pin_of(headers).startswith("canary_pin=T.")
    assert open_link(rotated, unopened["url"])[0] == 410


@pytest.mark.parametrize("body, message", [
    ({"cluster": "purple"}, "cluster: one of blue, green"),
    ({"cluster": "green", "ttl": "8x"}, "ttl: expected seconds or 30m/8h/2d"),
    ({"cluster": "green", "ttl": 10}, "ttl: between 60 seconds and 30 days"),
    ({"cluster": "green", "ttl": "31d"}, "ttl: between 60 seconds and 30 days"),
    ({"cluster": "green", "note": 1}, "note: unknown key"),
])
def test_bad_link_requests_name_the_key(router, body: dict[str, Any], message: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as e:
        router.api("POST", "/api/tester-links", body)
    assert e.value.code == 400 and message in json.loads(e.value.read())["error"]


def cli(r, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CANARY_ADMIN_TOKEN=TOKEN, CANARY_PIN_SECRET=PIN_SECRET)
    return subprocess.run([sys.executable, "-m", "canary", "tester-link", *args, "--admin", r.admin_url],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=30)


def test_cli_makes_lists_and_revokes_links(router) -> None:
    made = cli(router, "green", "--ttl", "2h")
    assert made.returncode == 0, made.stderr
    url = made.stdout.splitlines()[0]
    assert url.startswith("https://login.example.test/_canary/tester/")
    link = url.rsplit("/", 1)[1].split(".")[0]
    listed = cli(router, "--list")
    assert listed.returncode == 0 and link in listed.stdout and "not opened yet" in listed.stdout
    ended = cli(router, "--revoke", link)
    assert ended.returncode == 0 and link in ended.stdout
    for args, message in ((["purple"], "cluster: one of blue, green"), (["green", "--ttl", "forever"], "ttl:"),
                          (["--revoke", link], "no live tester link"), ([], "give CLUSTER, --list or --revoke"),
                          (["green", "--list"], "one of them")):
        bad = cli(router, *args)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, \
            (args, bad.stderr)


def test_link_ids_never_read_as_an_option() -> None:
    """Ids go on a command line (`--revoke ID`): every byte value yields one that cannot start with "-"."""
    from canary.dataplane.testers import link_id
    for b in range(256):
        link = link_id(bytes([b]) * 12)
        assert len(link) == 24 and link.isalnum() and not link.startswith("-") and "." not in link, link


@pytest.mark.parametrize("store", ["file", "redis"])
def test_changes_made_at_once_on_two_routers_are_all_kept(store: str, clusters, router_factory, request) -> None:
    """The shared state is read, changed and written as one step (flock, or WATCH/MULTI in Redis): twenty links
    made at once on two routers are twenty links, and a revoke racing the others is never undone."""
    from concurrent.futures import ThreadPoolExecutor
    args = ["--redis", request.getfixturevalue("redis_url")] if store == "redis" else []
    config = toml_config(clusters, public_origin="https://login.example.test", **FAST)
    routers = [router_factory(args=args, config=config), router_factory(args=args, config=config)]
    doomed = make_link(routers[0], "green")["id"]
    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(make_link, routers[i % 2], "blue") for i in range(20)]
        jobs.append(pool.submit(routers[1].api, "DELETE", f"/api/tester-links/{doomed}"))
        made = {j.result()["id"] for j in jobs[:-1]}
        assert jobs[-1].result()["ended"] == [doomed]
    for r in routers:
        wait_for(lambda r=r: {x["id"] for x in r.api("GET", "/api/tester-links")["links"]} == made, 5,
                 "every link on every router, the revoked one gone")
