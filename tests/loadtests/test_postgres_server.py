"""The SSO bench's PostgreSQL (loadtests/bench/postgres_server.py): never a database someone uses, and
gone afterwards; without one, a reason the bench can print instead of failing."""
from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from loadtests.bench import postgres_server

needs_server = pytest.mark.skipif(postgres_server.binaries() is None,
                                  reason="needs PostgreSQL's server binaries (Debian: apt-get install postgresql)")


def _no_database_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)


def test_without_any_postgresql_the_reason_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_database_in_the_environment(monkeypatch)
    monkeypatch.setattr(postgres_server, "binaries", lambda: None)
    with pytest.raises(postgres_server.Unavailable, match="no PostgreSQL server installed"):
        with postgres_server.database():
            pass


@needs_server
def test_a_throwaway_server_serves_the_run_and_is_removed_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    _no_database_in_the_environment(monkeypatch)
    with postgres_server.database() as database:
        with psycopg.connect(database.url) as db:
            assert db.execute("SELECT current_database()").fetchone() == ("loginsvc",)
        folder = Path(f"/proc/{database.server_pid}/cwd").resolve()
    port = urlsplit(database.url).port
    assert port is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert not folder.exists()


@needs_server
def test_on_database_urls_server_a_scratch_database_is_used_and_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database DATABASE_URL names is never written to: the run gets one of its own on that server."""
    import psycopg

    _no_database_in_the_environment(monkeypatch)
    with postgres_server.database() as server:
        monkeypatch.setenv("DATABASE_URL", server.url)
        with postgres_server.database() as scratch:
            name = urlsplit(scratch.url).path.lstrip("/")
            assert name != "loginsvc" and name.startswith("loginsvc_bench_")
            with psycopg.connect(scratch.url) as db:
                db.execute("CREATE TABLE written (x int)")
        with psycopg.connect(server.url) as db:
            assert db.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (0,)
            assert db.execute("SELECT to_regclass('written')").fetchone() == (None,)
