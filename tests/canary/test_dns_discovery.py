"""DNS discovery: a cluster given as `dns = "HOST:PORT"` is every address the name resolves to."""
from __future__ import annotations

import asyncio
import json
import urllib.error
from pathlib import Path

import pytest

from canary.cli.router_process import RouterProcess
from canary.config.loading import from_dict
from canary.config.settings import ConfigError
from canary.discovery.dns_discovery import node_configs

from .conftest import FAST, free_port


def dns_config(blue: str, green: str, tmp_path: Path, **extra: object) -> str:
    lines = [f'state_file = "{tmp_path / "state.json"}"', "access_log = false"]
    for name, dns in (("blue", blue), ("green", green)):
        lines += ["[[clusters]]", f'name = "{name}"', f'dns = "{dns}"', "dns_refresh = 0.2"]
    lines += ["[health_check]"] + [f"{k} = {json.dumps(v)}" for k, v in FAST["health_check"].items()]
    return "\n".join(lines) + "\n"


def test_a_real_router_routes_to_what_a_dns_name_resolves_to(backends, router_factory, tmp_path):
    """`localhost` through the system resolver: the backend on 127.0.0.1 becomes node blue-127.0.0.1."""
    blue, green = backends("blue", 1)[0], backends("green", 1)[0]
    router = router_factory(config=dns_config(f"localhost:{blue.port}", f"localhost:{green.port}", tmp_path))
    st = router.wait_status(lambda s: any(n["name"] == "blue-127.0.0.1" and n["state"] == "healthy"
                                         for n in s["clusters"]["blue"]["nodes"]))
    assert {n["address"] for n in st["clusters"]["green"]["nodes"]} >= {f"127.0.0.1:{green.port}"}
    statuses = {router.get("/")[0] for _ in range(20)}
    assert statuses == {200}
    listed = router.api("GET", "/api/clusters/blue/nodes")
    assert listed["source"] == "dns"
    # Its node list belongs to DNS: the admin API refuses to replace it.
    with pytest.raises(urllib.error.HTTPError) as refused:
        router.api("PUT", "/api/clusters/blue/nodes", {"nodes": [{"name": "x", "address": "127.0.0.1:1"}]})
    assert refused.value.code == 409 and b"DNS" in refused.value.read()


@pytest.mark.parametrize("cluster, message", [
    ({"name": "blue", "dns": "db:80", "nodes": ["127.0.0.1:1"]}, "give either nodes or dns"),
    ({"name": "blue", "dns": "no-port"}, "clusters[0].dns: expected HOST:PORT"),
    ({"name": "blue", "dns": "db:0"}, "port must be 1..65535"),
    ({"name": "blue", "dns": "db:80", "dns_refresh": 0}, "dns_refresh: must be between 0.1 and 3600"),
    ({"name": "blue", "nodes": ["127.0.0.1:1"], "dns_refresh": 5}, "dns_refresh: only with dns"),
])
def test_bad_dns_settings_name_the_key(cluster, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        from_dict({"clusters": [cluster, {"name": "green", "dns": "green:80"}]})


def test_answers_change_the_nodes_failures_keep_them_and_drains_apply(tmp_path):
    """In-process router with a stand-in resolver (DNS itself is outside our control)."""
    answers: dict[str, list[str] | Exception] = {"blue.test": ["127.0.0.11", "127.0.0.12"], "green.test": ["127.0.0.21"]}

    async def resolver(host: str, port: int) -> list[str]:
        answer = answers[host]
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    cfg = from_dict({"listen": f"127.0.0.1:{free_port()}", "admin": f"127.0.0.1:{free_port()}",
                     "state_file": str(tmp_path / "state.json"), "access_log": False,
                     "clusters": [{"name": "blue", "dns": "blue.test:8000", "dns_refresh": 3600},
                                  {"name": "green", "dns": "green.test:8000", "dns_refresh": 3600}]})

    async def scenario() -> None:
        app = RouterProcess(cfg, "admin-token-0123456789", "pin-secret-0123456789")
        app.discovery.resolver = resolver
        await app.start()
        try:
            blue = app.routing.clusters["blue"]
            names = lambda: [n.name for n in blue.nodes]  # noqa: E731
            assert names() == ["blue-127.0.0.11", "blue-127.0.0.12"]
            first = blue.nodes[0]
            first.status_counts[2] = 7                      # a counter that must survive an unchanged answer
            await app.change(lambda s: s.update(drained=["blue/blue-127.0.0.13"]))   # drained before it exists
            answers["blue.test"] = ["127.0.0.11", "127.0.0.13"]
            assert await app.discovery.refresh(blue, "blue.test", 8000)
            assert names() == ["blue-127.0.0.11", "blue-127.0.0.13"]
            assert blue.nodes[0] is first and first.status_counts[2] == 7
            assert blue.nodes[1].drained and app.nodes == [*blue.nodes, *app.routing.clusters["green"].nodes]
            assert app.status()["clusters"]["blue"]["nodes"][1]["state"] == "drained"
            # A failing or empty answer keeps the last known nodes.
            answers["blue.test"] = OSError("temporary failure in name resolution")
            assert not await app.discovery.refresh(blue, "blue.test", 8000)
            answers["blue.test"] = []
            assert not await app.discovery.refresh(blue, "blue.test", 8000)
            assert names() == ["blue-127.0.0.11", "blue-127.0.0.13"] and app.discovery.failures == 2
            # The shared state's node lists never override a DNS cluster.
            await app.change(lambda s: s.update(nodes={"blue": [{"name": "x", "address": "127.0.0.99:1"}]}))
            assert names() == ["blue-127.0.0.11", "blue-127.0.0.13"]
        finally:
            await app.shutdown()

    asyncio.run(scenario())


def test_ipv6_addresses_make_valid_node_names():
    nodes = node_configs("green", ["::1", "10.0.0.7"], 8000)
    assert [(n.name, n.host, n.port) for n in nodes] == [("green---1", "::1", 8000), ("green-10.0.0.7", "10.0.0.7", 8000)]
