"""Ops verbs through the real CLI against a real router; bad arguments exit 2 with one message."""
from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest
import requests

from .conftest import FAST, PY, ROOT, TOKEN, toml_config


def cli(*args: str, token: str | None = TOKEN, cwd=None, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("CANARY_ADMIN_TOKEN", None)
    env.pop("REDIS_URL", None)
    env.pop("LOGINSVC_VAR_DIR", None)   # the token file's default is then var/ under the working directory
    if token is not None:
        env["CANARY_ADMIN_TOKEN"] = token
    env.update(env_extra or {})
    return subprocess.run([PY, "-m", "canary", *args], capture_output=True, text=True, timeout=30, cwd=cwd or ROOT,
                          env=env)


@pytest.fixture
def router(backends, router_factory):
    cfg = toml_config({"blue": backends("blue", 1), "green": backends("green", 1)}, access_log=False, **FAST)
    return router_factory(config=cfg)


def test_verbs(router):
    a = ["--admin", router.admin_url]
    p = cli("status", "--json", *a)
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert st["stable"] == "blue" and st["canary"] == "green" and st["percent"] == 0
    assert cli("ramp", "25", *a).returncode == 0
    assert router.status()["percent"] == 25
    p = cli("status", *a)
    assert p.returncode == 0 and "share=25%" in p.stdout and "blue" in p.stdout
    assert cli("promote", *a).returncode == 0
    st = router.status()
    assert st["stable"] == "green" and st["canary"] == "blue" and st["percent"] == 0
    assert cli("ramp", "40", *a).returncode == 0
    assert cli("rollback", *a).returncode == 0
    assert router.status()["percent"] == 0
    assert cli("drain", "blue-1", *a).returncode == 0
    assert router.status()["drained"] == ["blue/blue-1"]
    assert cli("undrain", "blue/blue-1", *a).returncode == 0
    assert router.status()["drained"] == []


def test_token_file_used_when_env_unset(router, tmp_path):
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "var" / "canary-admin-token").write_text(TOKEN + "\n")
    p = cli("status", "--admin", router.admin_url, token=None, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    # With LOGINSVC_VAR_DIR set (as `make up` and manage.py use it), the file is looked for there instead.
    stack_var = tmp_path / "stack-var"
    stack_var.mkdir()
    p = cli("status", "--admin", router.admin_url, token=None, cwd=tmp_path,
            env_extra={"LOGINSVC_VAR_DIR": str(stack_var)})
    assert p.returncode == 2 and str(stack_var / "canary-admin-token") in p.stderr
    (stack_var / "canary-admin-token").write_text(TOKEN + "\n")
    assert cli("status", "--admin", router.admin_url, token=None, cwd=tmp_path,
               env_extra={"LOGINSVC_VAR_DIR": str(stack_var)}).returncode == 0
    other = tmp_path / "tok"
    other.write_text("nope")
    p = cli("status", "--admin", router.admin_url, token=None, cwd=tmp_path,
            env_extra={"CANARY_ADMIN_TOKEN_FILE": str(other)})
    assert p.returncode == 1 and "401" in p.stderr


def test_sign_out_all_ends_every_dashboard_session(router):
    browser = requests.Session()
    assert browser.post(router.admin_url + "/login", data={"token": TOKEN}, allow_redirects=False,
                        timeout=5).status_code == 303
    assert browser.get(router.admin_url + "/api/status", timeout=5).status_code == 200
    p = cli("sign-out-all", "--admin", router.admin_url)
    assert p.returncode == 0 and "signed out" in p.stdout, p.stderr
    assert browser.get(router.admin_url + "/api/status", timeout=5).status_code == 401


@pytest.mark.parametrize("args", [
    ["ramp", "150"], ["ramp", "abc"], ["ramp", "-5"], ["drain", "no-such-node"], ["frobnicate"], ["ramp"],
    ["status", "--admin", "ftp://x"],
])
def test_bad_arguments_exit_2_one_line(router, args):
    if "--admin" not in args:
        args = args + ["--admin", router.admin_url]
    p = cli(*args)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("canary: error:"), p.stderr
    assert TOKEN not in p.stderr + p.stdout


def test_bad_token_401(router):
    p = cli("ramp", "10", "--admin", router.admin_url, token="wrong-token")
    assert p.returncode == 1 and "401" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert router.status()["percent"] == 0
    for path in ("/api/status",):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(router.admin_url + path, timeout=5)
        assert e.value.code == 401
    req = urllib.request.Request(router.admin_url + "/api/ramp", data=b'{"percent": 5}', method="POST",
                                 headers={"Authorization": "Bearer x"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 401
    assert urllib.request.urlopen(router.admin_url + "/healthz", timeout=5).status == 200
    assert urllib.request.urlopen(router.admin_url + "/metrics", timeout=5).status == 200


@pytest.mark.parametrize("config, key", [
    ('[[clusters]]\nname = "a"\nnodes = ["127.0.0.1:1"]\n', "clusters"),
    ('[[clusters]]\nname = "a"\nnodes = ["127.0.0.1:1"]\n[[clusters]]\nname = "b"\nnodes = ["127.0.0.1:x"]\n',
     "clusters[1].nodes[0]"),
    ('[[clusters]]\nname = "a"\nnodes = ["127.0.0.1:1"]\n[[clusters]]\nname = "b"\nnodes = ["127.0.0.1:2"]\n'
     '[health_check]\ninterval = -1\n', "health_check.interval"),
    ('[[clusters]]\nname = "a"\nnodes = ["127.0.0.1:1"]\n[[clusters]]\nname = "b"\nnodes = ["127.0.0.1:2"]\n'
     '[timeouts]\nbogus = 1\n', "timeouts.bogus"),
    ('this is = = not toml', "invalid TOML"),
])
def test_bad_config_exit_2(tmp_path, config, key):
    f = tmp_path / "c.toml"
    f.write_text(config)
    p = cli("serve", "--config", str(f), cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], p.stderr


@pytest.mark.parametrize("args", [
    ["serve", "--cluster", "a=127.0.0.1:1"],
    ["serve", "--cluster", "a=127.0.0.1:1", "--cluster", "b=nohost"],
    ["serve", "--cluster", "a=127.0.0.1:1", "--cluster", "b=127.0.0.1:2", "--listen", "bad"],
    ["serve", "--cluster", "a=127.0.0.1:1", "--cluster", "b=127.0.0.1:2", "--workers", "x"],
])
def test_bad_serve_args_exit_2(tmp_path, args):
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_serve_generates_0600_secrets_in_a_0700_var(backends, tmp_path):
    import signal
    import time
    from .conftest import free_port, wait_port
    b, g = backends("blue", 1)[0], backends("green", 1)[0]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CANARY_") and k not in ("REDIS_URL", "LOGINSVC_VAR_DIR")}
    env["PYTHONPATH"] = str(ROOT)
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "canary", "serve", "--listen", f"127.0.0.1:{port}", "--admin",
                             f"127.0.0.1:{free_port()}", "--cluster", f"blue=127.0.0.1:{b.port}",
                             "--cluster", f"green=127.0.0.1:{g.port}"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_port(port)
        assert ((tmp_path / "var").stat().st_mode & 0o777) == 0o700
        for name in ("canary-admin-token", "canary-pin-secret"):
            f = tmp_path / "var" / name
            assert f.exists() and (f.stat().st_mode & 0o777) == 0o600
        token = (tmp_path / "var" / "canary-admin-token").read_text().strip()
        time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert token.encode() not in out + err
    assert (tmp_path / "var" / "canary-state.json").exists()


@pytest.mark.parametrize("variable", ["CANARY_ADMIN_TOKEN", "CANARY_PIN_SECRET"])
def test_serve_refuses_a_short_secret(tmp_path, variable):
    env = {variable: "short"}
    p = cli("serve", "--cluster", "a=127.0.0.1:1", "--cluster", "b=127.0.0.1:2", cwd=tmp_path, env_extra=env)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{variable}: must be at least 16 characters" in lines[0]
    assert "short" not in lines[0]  # the message names the problem, never the value
