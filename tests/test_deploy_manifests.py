"""Production deployment files (deploy/k8s, deploy/systemd): valid offline, and consistent with the code."""
from __future__ import annotations

import ast
import asyncio
import copy
import importlib.util
import ipaddress
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes_validate import utils as kv

from canary.admin import api as canary_admin
from canary.cli import main as canary_cli
from canary.config import loading as canary_config_file
from canary.config import settings as canary_config
from canary.config import secret as canary_secret
from loginsvc import conf
from loginsvc.health import middleware
from sharedlib.networks import parse_ranges

ROOT = Path(__file__).resolve().parent.parent
K8S, SYSTEMD = ROOT / "deploy" / "k8s", ROOT / "deploy" / "systemd"
# The oldest Kubernetes the manifests support (the preStop `sleep` action is on by default from
# 1.30) and the newest schema the validator ships.
KUBERNETES_VERSIONS = ("1.30", kv.latest_version())
SENSITIVE = {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CANARY_ADMIN_TOKEN", "CANARY_PIN_SECRET",
             "LOGINSVC_METRICS_TOKEN", "SENTRY_DSN"}
UNITS = sorted(SYSTEMD.glob("*.service"))
PROCESS_MIB = 60  # RSS of one process with Django loaded (measured ~50 MiB), plus headroom
Doc = dict[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# -- loading -----------------------------------------------------------------------------------------------
def documents() -> list[tuple[Path, Doc]]:
    return [(p, d) for p in sorted(K8S.rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def of_kind(kind: str) -> list[Doc]:
    return [d for _, d in documents() if d["kind"] == kind]


def named(kind: str, name: str) -> Doc:
    (doc,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return doc


def pod_specs() -> list[tuple[str, Doc]]:
    return [(d["metadata"].get("name") or d["metadata"]["generateName"], d["spec"]["template"]["spec"])
            for d in of_kind("Deployment") + of_kind("Job")]


def main_container(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]["containers"][0]


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def is_router(container: Doc) -> bool:
    return container["command"][:3] == ["python", "-m", "canary"]


def login_deployments() -> list[Doc]:
    return [d for d in of_kind("Deployment") if not is_router(main_container(d))]


def router_deployment() -> Doc:
    (dep,) = [d for d in of_kind("Deployment") if is_router(main_container(d))]
    return dep


def router_cfg() -> canary_config.Config:
    """router.toml of the ConfigMap, through the router's own loader and validation."""
    return canary_config_file.from_dict(tomllib.loads(named("ConfigMap", "canary-router-config")["data"]["router.toml"]))


def selects(service: Doc, workload: Doc) -> bool:
    return service["spec"]["selector"].items() <= workload["spec"]["template"]["metadata"]["labels"].items()


def secret_values() -> dict[tuple[str, str], str]:
    return {(s["metadata"]["name"], k): v for s in of_kind("Secret") for k, v in s.get("stringData", {}).items()}


def port_number(container: Doc, port: int | str) -> int:
    return port if isinstance(port, int) else {p.get("name"): p["containerPort"] for p in container["ports"]}[port]


def gunicorn_default(variable: str) -> float | None:
    """The default deploy/gunicorn.conf.py gives `os.environ.get(variable, default)`, or None if unread."""
    for node in ast.walk(ast.parse((ROOT / "deploy" / "gunicorn.conf.py").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "get" and len(node.args) == 2 \
                and isinstance(node.args[0], ast.Constant) and node.args[0].value == variable:
            return float(ast.literal_eval(node.args[1]))
    return None


# -- which environment variables the code reads ------------------------------------------------------------
def _env_reads(path: Path) -> set[str]:
    """Names read through os.environ / os.getenv, `PREFIX + "X"`, or a secret-file helper."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        arg: ast.AST | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            receiver = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if (receiver.endswith("environ") and callee in {"get", "setdefault"}) or callee == "getenv" \
                    or callee in {"_read_secret_file", "read_secret", "load_or_create_secret", "secret_path"}:
                arg = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
            arg = node.slice
        elif isinstance(node, ast.BinOp) and ast.unparse(node.left) in {"PREFIX", "conf.PREFIX"}:
            arg = ast.Constant(conf.PREFIX + node.right.value) if isinstance(node.right, ast.Constant) else None
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            names.add(arg.value)
    return names


def login_env_names() -> set[str]:
    files = [*(ROOT / "loginsvc").rglob("*.py"), ROOT / "deploy" / "gunicorn.conf.py"]
    return {conf.PREFIX + key for key in conf.OPTIONS} | set().union(*map(_env_reads, files))


def router_env_names() -> set[str]:
    files = list((ROOT / "canary").rglob("*.py"))
    # canary/config/secret.py passes its names on in tuples: grep the CANARY_* literals too.
    grep = {m for f in files for m in re.findall(r"[\"'](CANARY_[A-Z0-9_]+)[\"']", f.read_text())}
    return set().union(*map(_env_reads, files)) | grep


# -- systemd -----------------------------------------------------------------------------------------------
def unit(path: Path) -> dict[str, list[str]]:
    """`Section.Key` -> every value of that key, in order (systemd allows repeated keys)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def env_file_names(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an example env file, including commented-out optional ones."""
    return dict(re.findall(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", path.read_text(), re.MULTILINE))


def check_command(argv: list[str], cwd_is_checkout: bool = True) -> None:
    """`python -m MODULE ARGS`: the module exists, and gunicorn's config file / canary's verb do too."""
    assert Path(argv[0]).name == "python" and argv[1] == "-m", argv
    module, args = argv[2], argv[3:]
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    if module == "gunicorn":
        config = args[args.index("-c") + 1]
        assert cwd_is_checkout and (ROOT / config).is_file(), config
    elif module == "canary":
        assert canary_cli.build_parser().parse_args(args).cmd == "serve"


# -- Kubernetes tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    docs = documents()
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret"} <= {d["kind"] for _, d in docs}
    for path, doc in docs:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{path.relative_to(ROOT)} {doc['kind']}: {exc.message} at {list(exc.path)}")


def test_the_validator_rejects_broken_manifests() -> None:
    deployment = named("Deployment", "login-blue")
    kv.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    unknown_field = copy.deepcopy(deployment)
    main_container(unknown_field)["livenesProbe"] = {}
    for broken in (wrong_type, unknown_field):
        with pytest.raises(kv.ValidationError):
            kv.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_node_probes_are_the_health_middleware_routes() -> None:
    for dep in login_deployments():
        container = main_container(dep)
        for probe, view in (("startupProbe", middleware.healthz), ("livenessProbe", middleware.healthz),
                            ("readinessProbe", middleware.readyz)):
            assert middleware.ROUTES.get(container[probe]["httpGet"]["path"]) is view, (dep["metadata"]["name"], probe)
    cfg = router_cfg()
    assert middleware.ROUTES.get(cfg.health_check.path) is middleware.readyz


def test_router_probes_hit_an_unauthenticated_admin_endpoint() -> None:
    container = main_container(router_deployment())
    admin_port = router_cfg().admin[1]
    handler = canary_admin.Admin(app=None, token="a-token-the-kubelet-does-not-send")  # type: ignore[arg-type]
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert port_number(container, get["port"]) == admin_port
        status, *_ = asyncio.run(handler.route("GET", get["path"], {}, b""))
        assert status == 200


def test_ports_match_the_bind_and_listen_addresses() -> None:
    for dep in login_deployments():
        container = main_container(dep)
        _, bind_port = canary_config_file.parse_hostport(env_of(container)["LOGINSVC_BIND"]["value"], "LOGINSVC_BIND")
        assert [p["containerPort"] for p in container["ports"]] == [bind_port]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert port_number(container, container[probe]["httpGet"]["port"]) == bind_port
    router = main_container(router_deployment())
    cfg = router_cfg()
    assert port_number(router, "http") == cfg.listen[1] and port_number(router, "admin") == cfg.admin[1]
    # Every Service selects a Deployment and targets one of its container ports.
    for svc in of_kind("Service"):
        if svc["spec"].get("type") == "ExternalName":
            continue
        (dep,) = [d for d in of_kind("Deployment") if selects(svc, d)]
        for port in svc["spec"]["ports"]:
            port_number(main_container(dep), port["targetPort"])


def test_env_names_are_read_by_the_code() -> None:
    login_names, router_names = login_env_names(), router_env_names()
    assert {"LOGINSVC_CLUSTER", "DJANGO_SECRET_KEY", "LOGINSVC_BIND"} <= login_names  # the scan works
    assert {"CANARY_ADMIN_TOKEN", "CANARY_PIN_SECRET", "REDIS_URL"} <= router_names
    configmaps = {c["metadata"]["name"]: set(c["data"]) for c in of_kind("ConfigMap")}
    for name, spec in pod_specs():
        for container in spec["containers"]:
            used = set(env_of(container)) | set().union(
                *(configmaps[f["configMapRef"]["name"]] for f in container.get("envFrom", [])))
            unknown = used - (router_names if is_router(container) else login_names)
            assert not unknown, f"{name}: variables no code reads: {sorted(unknown)}"
    for path in UNITS:
        known = router_names if "canary" in unit(path)["Service.ExecStart"][0] else login_names
        names = {a.partition("=")[0] for a in unit(path).get("Service.Environment", [])}
        assert names <= known, (path.name, sorted(names - known))
    for example, known in (("loginsvc.env.example", login_names), ("node.env.example", login_names),
                           ("canary.env.example", router_names)):
        names = set(env_file_names(SYSTEMD / example))
        assert names and names <= known, (example, sorted(names - known))


def test_secrets_are_referenced_not_inlined() -> None:
    secrets = secret_values()
    for configmap in of_kind("ConfigMap"):
        assert not SENSITIVE & set(configmap["data"]), configmap["metadata"]["name"]
    for name, spec in pod_specs():
        for container in spec["containers"]:
            for variable, entry in env_of(container).items():
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                assert variable not in SENSITIVE or ref, f"{name}: {variable} must come from a Secret"
                if ref and not ref.get("optional"):
                    assert (ref["name"], ref["key"]) in secrets, f"{name}: {variable}: no such Secret key"


def test_secret_template_holds_placeholders_the_code_refuses() -> None:
    secrets = secret_values()
    assert secrets and all("REPLACE-ME" in value for value in secrets.values())
    for key in ("admin-token", "pin-secret"):
        assert len(secrets["canary-router-secrets", key]) < canary_secret.MIN_LENGTH
    env = {k: v for k, v in os.environ.items() if k not in SENSITIVE}
    env.update(LOGINSVC_MODE="production", DJANGO_ALLOWED_HOSTS="login.example.com",
               DJANGO_SECRET_KEY=secrets["loginsvc-secrets", "django-secret-key"])
    result = subprocess.run([sys.executable, "-c", "import loginsvc.settings"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr, result.stderr[-500:]
    # The URLs' hosts are those the ExternalName Services record for the external Redis and PostgreSQL
    # (the real names: TLS verification checks them against the servers' certificates).
    external = {s["spec"]["externalName"] for s in of_kind("Service") if s["spec"].get("type") == "ExternalName"}
    for (_, key), value in secrets.items():
        if key.endswith("-url"):
            assert urlsplit(value).hostname in external, key


def test_router_has_replicas_sharing_state_through_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dep = router_deployment()
    assert dep["spec"]["replicas"] >= 2
    spec, container = dep["spec"]["template"]["spec"], main_container(dep)
    env = env_of(container)
    assert {"CANARY_ADMIN_TOKEN", "CANARY_PIN_SECRET"} <= set(env)
    # The --config path is the ConfigMap's key, where the ConfigMap volume is mounted.
    args = container["command"][3:]
    config_path = Path(args[args.index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    local = tmp_path / config_path.name
    local.write_text(named("ConfigMap", volume["configMap"]["name"])["data"][config_path.name])
    args[args.index("--config") + 1] = str(local)
    # Run the router's own argument handling with the environment the pod gets.
    monkeypatch.delenv("REDIS_URL", raising=False)
    if ref := env.get("REDIS_URL", {}).get("valueFrom", {}).get("secretKeyRef"):
        monkeypatch.setenv("REDIS_URL", secret_values()[ref["name"], ref["key"]])
    cfg = canary_cli.config_from_args(canary_cli.build_parser().parse_args(args))
    assert cfg.redis and cfg.redis.startswith(("redis://", "rediss://"))


def test_router_clusters_are_the_cluster_services() -> None:
    """Each cluster is discovered through its headless Service's name, which publishes not-ready pods too
    (so a Redis outage, which makes every pod not ready, leaves the router pods to route to)."""
    cfg = router_cfg()
    svcs = {s["metadata"]["name"]: s for s in of_kind("Service")}
    for cluster in cfg.clusters:
        assert cluster.dns is not None and not cluster.nodes, cluster.name
        host, port = cluster.dns
        svc = svcs[host]
        assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
        assert port in [p["port"] for p in svc["spec"]["ports"]]
        (dep,) = [d for d in login_deployments() if selects(svc, d)]
        assert env_of(main_container(dep))["LOGINSVC_CLUSTER"]["value"] == cluster.name
        # Headless: the router connects to pod addresses on this port, with no Service port mapping.
        assert port_number(main_container(dep), "http") == port
    clusters = [env_of(main_container(d))["LOGINSVC_CLUSTER"]["value"] for d in login_deployments()]
    assert sorted(c.name for c in cfg.clusters) == sorted(clusters)


def test_every_deployment_has_a_pdb_that_allows_drains() -> None:
    pdbs = of_kind("PodDisruptionBudget")
    for dep in of_kind("Deployment"):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        (pdb,) = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        if "maxUnavailable" in pdb["spec"]:
            assert pdb["spec"]["maxUnavailable"] >= 1
        else:
            assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]


def test_pods_have_resources_run_unprivileged_and_fit_argon2() -> None:
    for name, spec in pod_specs():
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], name
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
    mib = {"Mi": 1, "Gi": 1024}
    for dep in login_deployments():
        container = main_container(dep)
        env = env_of(container)
        workers, threads = int(env["WEB_CONCURRENCY"]["value"]), int(env["LOGINSVC_THREADS"]["value"])
        argon2_kib = int(env.get("LOGINSVC_ARGON2_MEMORY_COST", {}).get("value")
                         or conf.OPTIONS["ARGON2_MEMORY_COST"].default)
        needed = (workers + 1) * PROCESS_MIB + workers * threads * argon2_kib / 1024
        limit = container["resources"]["limits"]["memory"]
        assert int(limit[:-2]) * mib[limit[-2:]] >= needed, (dep["metadata"]["name"], limit, needed)


def test_termination_grace_outlasts_the_drain() -> None:
    for dep in of_kind("Deployment"):
        spec, container = dep["spec"]["template"]["spec"], main_container(dep)
        stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        if not is_router(container):
            env = env_of(container)
            for variable in ("LOGINSVC_GRACEFUL_TIMEOUT", "LOGINSVC_DRAIN_SECONDS"):
                value = env.get(variable, {}).get("value") or gunicorn_default(variable) or 0
                stop += float(value)
            assert gunicorn_default("LOGINSVC_GRACEFUL_TIMEOUT")
        assert spec["terminationGracePeriodSeconds"] > stop, dep["metadata"]["name"]


def test_blue_and_green_are_twins() -> None:
    def normalised(path: Path) -> list[Doc]:
        docs = [d for d in yaml.safe_load_all(path.read_text().replace("green", "blue")) if d]
        for doc in docs:
            for container in doc["spec"].get("template", {}).get("spec", {}).get("containers", []):
                container.pop("image")
                container["env"] = [e for e in container["env"] if e["name"] != "LOGINSVC_RELEASE"]
        return docs
    assert normalised(K8S / "login-blue.yaml") == normalised(K8S / "login-green.yaml")


def test_commands_exist_and_release_is_the_image_tag() -> None:
    for name, spec in pod_specs():
        for container in spec["containers"]:
            argv = container["command"]
            if argv[1:2] == ["manage.py"]:
                assert (ROOT / argv[1]).is_file() and argv[2] == "migrate"
            else:
                check_command(argv, container.get("workingDir") == "/app")
            release = env_of(container).get("LOGINSVC_RELEASE")
            if release:
                assert container["image"].rsplit(":", 1)[1] == release["value"], name


# -- systemd tests -----------------------------------------------------------------------------------------
def test_units_restart_always_and_start_existing_commands() -> None:
    assert {p.name for p in UNITS} >= {"loginsvc@.service", "canary-router.service"}
    for path in UNITS:
        u = unit(path)
        assert u["Service.Restart"] == ["always"] and float(u["Service.RestartSec"][0]) > 0, path.name
        assert u["Service.KillMode"] == ["mixed"], path.name
        for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes")):
            assert u[f"Service.{key}"] == [value], (path.name, key)
        assert u["Install.WantedBy"], path.name
        argv = shlex.split(u["Service.ExecStart"][0])
        assert u["Service.WorkingDirectory"] == [str(Path(argv[0]).parent.parent.parent)], "cwd is the checkout"
        check_command(argv)
        if argv[2] == "gunicorn":  # SIGKILL only after the drain and gunicorn's graceful stop
            assert "LOGINSVC_NODE=%i" in u["Service.Environment"]
            assert any("%i" in f for f in u["Service.EnvironmentFile"])
            graceful = gunicorn_default("LOGINSVC_GRACEFUL_TIMEOUT") or 0
            assert float(u["Service.TimeoutStopSec"][0]) > graceful + (gunicorn_default("LOGINSVC_DRAIN_SECONDS") or 0)
        # Every credential a *_FILE variable names is loaded.
        credentials = {c.split(":", 1)[0] for c in u.get("Service.LoadCredential", [])}
        for assignment in u.get("Service.Environment", []):
            variable, _, value = assignment.partition("=")
            if value.startswith("%d/"):
                assert variable.endswith("_FILE") and value[3:] in credentials, (path.name, variable)


def test_vm_router_config_lists_the_example_node_and_hops_match() -> None:
    cfg = canary_config_file.load_toml(str(SYSTEMD / "router.toml.example"))
    assert middleware.ROUTES.get(cfg.health_check.path) is middleware.readyz
    node_env = env_file_names(SYSTEMD / "node.env.example")
    host, port = canary_config_file.parse_hostport(node_env["LOGINSVC_BIND"], "LOGINSVC_BIND")
    (cluster,) = [c for c in cfg.clusters if any((n.host, n.port) == (host, port) for n in c.nodes)]
    assert cluster.name == node_env["LOGINSVC_CLUSTER"]
    assert env_file_names(SYSTEMD / "canary.env.example")["REDIS_URL"].startswith("rediss://")
    # Nodes trust one X-Forwarded-For hop more than the router (the TLS edge + the router itself).
    vm_hops = int(env_file_names(SYSTEMD / "loginsvc.env.example")["LOGINSVC_TRUSTED_PROXY_HOPS"])
    assert vm_hops == cfg.trusted_hops + 1
    k8s_hops = int(named("ConfigMap", "loginsvc-config")["data"]["LOGINSVC_TRUSTED_PROXY_HOPS"])
    assert k8s_hops == router_cfg().trusted_hops + 1


# -- who may connect: trusted proxies, NetworkPolicies, systemd IP filters ---------------------------------
def policies_selecting(labels: dict[str, str], policy_type: str) -> list[Doc]:
    return [p for p in of_kind("NetworkPolicy") if policy_type in p["spec"]["policyTypes"]
            and p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()]


def pod_labels(workload: Doc) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def admitted(labels: dict[str, str]) -> dict[int | str, set[tuple[str, ...]]]:
    """Port -> the peers the NetworkPolicies let in to pods with these labels: ("namespace", name) or
    ("pods", label=value, ...). Every rule must name both its ports and its peers (no open rule)."""
    out: dict[int | str, set[tuple[str, ...]]] = {}
    for policy in policies_selecting(labels, "Ingress"):
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("ports") and rule.get("from"), (policy["metadata"]["name"], rule)
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    assert "podSelector" not in peer, peer
                    who = ("namespace", peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
                else:
                    who = ("pods", *sorted(f"{k}={v}" for k, v in peer["podSelector"]["matchLabels"].items()))
                for port in rule["ports"]:
                    assert port["protocol"] == "TCP"
                    out.setdefault(port["port"], set()).add(who)
    return out


def egress_ports(labels: dict[str, str]) -> set[tuple[str, int]]:
    return {(port["protocol"], port["port"]) for policy in policies_selecting(labels, "Egress")
            for rule in policy["spec"].get("egress", []) for port in rule.get("ports", [])}


def test_network_policies_deny_by_default_and_admit_only_the_intended_peers() -> None:
    (default,) = [p for p in of_kind("NetworkPolicy") if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]
                  and "egress" not in p["spec"]]
    assert sorted(default["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    router, cfg = router_deployment(), router_cfg()
    ports = admitted(pod_labels(router))
    (edge,), (ops,) = ports.pop(cfg.listen[1]), ports.pop(cfg.admin[1])
    assert not ports and edge[0] == ops[0] == "namespace" and len({edge[1], ops[1], "loginsvc"}) == 3
    router_peer = ("pods", *sorted(f"{k}={v}" for k, v in router["spec"]["selector"]["matchLabels"].items()))
    for dep in login_deployments():
        bind_port = port_number(main_container(dep), "http")
        assert admitted(pod_labels(dep)) == {bind_port: {router_peer}}, dep["metadata"]["name"]
        # The router's selector picks the router, and no login pod: nothing else passes as "the router".
        peer_labels = dict(label.split("=", 1) for label in router_peer[1:])
        assert not peer_labels.items() <= pod_labels(dep).items()
    for job in of_kind("Job"):
        assert admitted(pod_labels(job)) == {}, "the migration Job needs nothing inbound"
    # Outbound: DNS everywhere; the router reaches the nodes and Redis; nodes and the Job Redis and PostgreSQL.
    external = {p["port"] for s in of_kind("Service") if s["spec"].get("type") == "ExternalName" for p in s["spec"]["ports"]}
    assert external == {5432, 6379}
    for workload in of_kind("Deployment") + of_kind("Job"):
        needed = {("UDP", 53), ("TCP", 53), ("TCP", 6379)}
        needed |= {("TCP", 8000)} if is_router(main_container(workload)) else {("TCP", 5432)}
        assert needed <= egress_ports(pod_labels(workload)), workload["metadata"].get("name")


def test_nodes_trust_forwarded_addresses_from_the_router_only() -> None:
    """Nodes believe X-Forwarded-* from the router pods' range (parsed by the code's own parser): private and
    far narrower than 'anyone'; on VMs, from exactly the router machines, whose address the router listens on."""
    nodes = parse_ranges(named("ConfigMap", "loginsvc-config")["data"]["LOGINSVC_TRUSTED_PROXIES"])
    assert nodes.networks and all(n.is_private and n.prefixlen >= 8 for n in nodes.networks), nodes
    vm_nodes = parse_ranges(env_file_names(SYSTEMD / "loginsvc.env.example")["LOGINSVC_TRUSTED_PROXIES"])
    vm_router = canary_config_file.load_toml(str(SYSTEMD / "router.toml.example"))
    assert vm_router.listen[0] in vm_nodes and all(n.num_addresses == 1 for n in vm_nodes.networks)


def router_trusted_proxies(cfg: canary_config.Config) -> list[Network]:
    """The router's `trusted_proxies` as networks (the loader's own type, whatever holds them)."""
    value = cfg.trusted_proxies
    return [ipaddress.ip_network(n) for n in getattr(value, "networks", value)]


def ip_filter(path: Path) -> list[Network]:
    """IPAddressAllow of a unit (which must deny everything else), `localhost` as systemd reads it."""
    u = unit(path)
    assert u.get("Service.IPAddressDeny") == ["any"], path.name
    named_ranges = {"localhost": ["127.0.0.0/8", "::1/128"]}
    words = [w for value in u.get("Service.IPAddressAllow", []) for w in value.split()]
    assert "any" not in words and "localhost" in words, (path.name, words)
    return [ipaddress.ip_network(n) for w in words for n in named_ranges.get(w, [w])]


def allows(networks: list[Network], candidate: Network | str) -> bool:
    wanted = ipaddress.ip_network(candidate)
    return any(wanted.version == n.version and wanted.subnet_of(n) for n in networks)  # type: ignore[arg-type]


def test_systemd_units_accept_only_their_peers() -> None:
    node_allow, router_allow = ip_filter(SYSTEMD / "loginsvc@.service"), ip_filter(SYSTEMD / "canary-router.service")
    cfg = canary_config_file.load_toml(str(SYSTEMD / "router.toml.example"))
    host = cfg.listen[0]
    assert not ipaddress.ip_address(host).is_unspecified, "the VM router listens on its private address"
    # Nodes: the router machines (the proxies they trust, the router's own address among them).
    trusted = parse_ranges(env_file_names(SYSTEMD / "loginsvc.env.example")["LOGINSVC_TRUSTED_PROXIES"])
    assert all(allows(node_allow, n) for n in trusted.networks) and allows(node_allow, host)
    # Router: every node it sends to.
    for cluster in cfg.clusters:
        assert all(allows(router_allow, node.host) for node in cluster.nodes), cluster.name


def test_router_trusts_forwarded_addresses_from_the_edge_only() -> None:
    """The router believes X-Forwarded-* from its `trusted_proxies` (through its own loader): set in both
    examples (not the loopback default, which would make every browser look like the edge), private, and on
    VMs admitted by the router's IP filter and not by the nodes': the edge cannot reach a node directly."""
    default = router_trusted_proxies(canary_config.Config(clusters=[]))
    vm_cfg = canary_config_file.load_toml(str(SYSTEMD / "router.toml.example"))
    for cfg in (router_cfg(), vm_cfg):
        networks = router_trusted_proxies(cfg)
        assert networks and networks != default and all(n.is_private and n.prefixlen >= 8 for n in networks)
    router_allow, node_allow = ip_filter(SYSTEMD / "canary-router.service"), ip_filter(SYSTEMD / "loginsvc@.service")
    assert all(allows(router_allow, n) for n in router_trusted_proxies(vm_cfg))
    assert not any(allows(node_allow, n) for n in router_trusted_proxies(vm_cfg))
