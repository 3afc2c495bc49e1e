"""A PostgreSQL database for one benchmark run, or the reason there is none.

Production runs on PostgreSQL, so the SSO bench measures on it whenever it can, without ever
writing into a database someone uses:
- BENCH_DATABASE_URL: an empty database named for the bench, used as it is;
- DATABASE_URL: a scratch database created on that server for the run and dropped afterwards
  (the database the URL names is never touched);
- else a throwaway server of our own (initdb + pg_ctl from Debian's postgresql package, as the
  CI script starts one; as the `postgres` user when we are root), deleted afterwards.
The server runs with PostgreSQL's default durability (fsync and synchronous_commit on), as in
production. Its postmaster's pid lets the bench count the database's CPU per request.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from deploy.node import free_port


@dataclass
class Database:
    """Where the nodes connect (`url`), what it is, and its postmaster's pid when the server is ours (to
    count the database's CPU)."""

    url: str
    source: str
    server_pid: int | None = None


class Unavailable(Exception):
    """No PostgreSQL for this run; the message says why (printed, the bench goes on without it)."""


def binaries() -> Path | None:
    """The newest installed server's bin folder (Debian keeps it off PATH), or PATH's initdb."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextlib.contextmanager
def database() -> Iterator[Database]:
    """The run's PostgreSQL database (see the module's docstring); Unavailable when there is none."""
    if os.environ.get("BENCH_DATABASE_URL"):
        yield Database(os.environ["BENCH_DATABASE_URL"], "BENCH_DATABASE_URL (an empty database)")
    elif os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        with _scratch_database(os.environ["DATABASE_URL"]) as url:
            yield Database(url, "a scratch database on DATABASE_URL's server")
    else:
        with _own_server() as found:
            yield found


def _psycopg():  # type: ignore[no-untyped-def]
    try:
        import psycopg
    except ImportError as exc:
        raise Unavailable(f"psycopg is not installed ({exc})") from None
    return psycopg


@contextlib.contextmanager
def _scratch_database(url: str) -> Iterator[str]:
    psycopg = _psycopg()
    parts = urlsplit(url)
    name = "loginsvc_bench_" + secrets.token_hex(4)
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as db:
            db.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise Unavailable(f"cannot create a scratch database on DATABASE_URL's server ({exc.__class__.__name__}: "
                          f"{str(exc).strip()[:200]}); set BENCH_DATABASE_URL to an empty database") from None
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def _own_server() -> Iterator[Database]:
    psycopg = _psycopg()
    folder = binaries()
    if folder is None:
        raise Unavailable("no PostgreSQL server installed (Debian: apt-get install postgresql), "
                          "no DATABASE_URL and no BENCH_DATABASE_URL")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = next((u for u in ("postgres", "nobody") if _exists(u)), None)
        if user is None or not shutil.which("runuser"):
            raise Unavailable("running as root, and there is no postgres user (or runuser) to run initdb as")
        as_user = ["runuser", "-u", user, "--"]
    directory = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    if as_user:
        shutil.chown(directory, as_user[2])
    data, port = directory / "data", free_port()

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    step = "initdb"
    try:
        try:
            run(str(folder / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
            step = "pg_ctl start"
            run(str(folder / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w", "start",
                "-o", f"-p {port} -k {directory} -c listen_addresses=127.0.0.1")
        except subprocess.CalledProcessError as exc:
            raise Unavailable(f"the throwaway PostgreSQL server did not start ({step}): "
                              f"{exc.stderr.decode(errors='replace')[-300:]}") from None
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as db:
            db.execute("CREATE DATABASE loginsvc")
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        version = f" {folder.parent.name}" if folder.parent.name.isdigit() else ""
        yield Database(f"postgresql://postgres@127.0.0.1:{port}/loginsvc",
                       f"a throwaway PostgreSQL{version} server (initdb, default durability)", postmaster)
    finally:
        if step == "pg_ctl start":
            subprocess.run([*as_user, str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True
