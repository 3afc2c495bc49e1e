"""The load suites' preparation reaches only the stack's own database: `manage.py` gets the stack's environment,
never the caller's (a production shell's DATABASE_URL or LOGINSVC_MODE)."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from deploy.stack import StackSpec, new_spec
from loadtests.prepare import manage_env, prepare
from tests import plugin
from tests.support import manage


def stack_spec(var: Path) -> StackSpec:
    return new_spec(var, "127.0.0.1:18000", "127.0.0.1:18001", 18010, 1, 12.0, plugin.REDIS.url)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated stack database, made once (migrating is the slow part) and copied for each test."""
    spec = stack_spec(tmp_path_factory.mktemp("migrated") / "var")
    spec.var.mkdir(mode=0o700)
    manage(manage_env(spec), "migrate", "--noinput", "-v", "0")
    return spec.var / "db.sqlite3"


@pytest.fixture
def spec(tmp_path: Path, migrated: Path) -> StackSpec:
    spec = stack_spec(tmp_path / "var")
    spec.var.mkdir(mode=0o700)
    shutil.copy(migrated, spec.var / "db.sqlite3")
    return spec


def test_a_production_shell_never_reaches_manage_py(tmp_path: Path, spec: StackSpec,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "production.sqlite3"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{elsewhere}")
    monkeypatch.setenv("LOGINSVC_MODE", "production")   # the commands would refuse (or fail) in it
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)

    prepared = prepare(spec, 5)

    assert prepared.accounts == ["--lt-accounts", "loadtest:5", "--lt-mfa", "1"]   # one in five has an app
    assert not elsewhere.exists()
    with sqlite3.connect(spec.var / "db.sqlite3") as db:
        emails = sorted(email for (email,) in db.execute("SELECT email FROM accounts_user"))
        clients = db.execute("SELECT client_id, client_type FROM oauth2_provider_application").fetchall()
        apps = db.execute("SELECT u.email, d.confirmed FROM mfa_totpdevice d JOIN accounts_user u ON u.id = d.user_id"
                          ).fetchall()
    assert emails == [f"loadtest-000{i}@loadtest.example.test" for i in range(5)]
    assert apps == [("loadtest-0000@loadtest.example.test", 1)]
    assert clients == [("loadtest", "confidential")]
    assert set(manage_env(spec, LOADTEST_PASSWORD="x")) == {
        "DJANGO_SETTINGS_MODULE", "LOGINSVC_MODE", "LOGINSVC_VAR_DIR", "REDIS_URL", "LOGINSVC_OIDC_ISSUER",
        "LOADTEST_PASSWORD"}


def test_an_accounts_file_creates_no_account(tmp_path: Path, spec: StackSpec) -> None:
    """`--accounts FILE` on the local stack: the product is registered, the file's accounts are used as they are."""
    accounts = tmp_path / "accounts.txt"
    prepared = prepare(spec, accounts)
    assert prepared.accounts == ["--lt-accounts-file", str(accounts)] and "LOADTEST_PASSWORD" not in prepared.env
    with sqlite3.connect(spec.var / "db.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM accounts_user").fetchone() == (0,)
        assert db.execute("SELECT client_id FROM oauth2_provider_application").fetchall() == [("loadtest",)]
