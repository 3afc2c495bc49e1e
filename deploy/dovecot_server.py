"""A local Dovecot (IMAP and SMTP submission) whose every login is asked of the login service.

Renders deploy/dovecot/*.in into a run directory of its own and runs Debian's Dovecot 2.3 in the
foreground on loopback ports: plain logins go to POST /api/mail/check through the Lua passdb
(deploy/dovecot/mail-check.lua), bearer tokens (OAUTHBEARER, XOAUTH2) to the introspection endpoint,
both with the mail server's own confidential client. Mailboxes live under the run directory's
`imap/`; submitted mail is relayed to a local SMTP server. Used by the tests and by `make up` when
Debian's dovecot-imapd, dovecot-submissiond and dovecot-auth-lua are installed.

Run as root (CI), Dovecot's own processes use Debian's `dovecot` and `dovenull` users and the
mailboxes belong to `dovecot`; run as anyone else, everything runs as that user.
"""
from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from deploy.node import port_open, wait_for

TEMPLATES = Path(__file__).resolve().parent / "dovecot"
IMAP_PORT, SUBMISSION_PORT = 1143, 1587  # `make up`'s: unprivileged neighbours of 143 and 587
LUA_MODULE = Path("/usr/lib/dovecot/modules/auth/libauthdb_lua.so")
PACKAGES = "dovecot-imapd dovecot-submissiond dovecot-auth-lua"


def missing() -> str | None:
    """Why Dovecot cannot run here (a sentence naming the Debian packages), or None."""
    if shutil.which("dovecot") is None or not Path("/usr/lib/dovecot/imap").exists():
        return f"Dovecot is not installed (apt-get install {PACKAGES})"
    if not Path("/usr/lib/dovecot/submission").exists() or not LUA_MODULE.exists():
        return f"Dovecot's submission service or Lua passdb is missing (apt-get install {PACKAGES})"
    return None


def unreachable(mail_dir: Path) -> str | None:
    """Run as root, why Dovecot's mail processes (Debian's `dovecot` user: Dovecot refuses uid 0 for mail)
    could not reach `mail_dir`, or None."""
    if os.geteuid() != 0:
        return None
    closed = [p for p in mail_dir.parents if p.exists() and not os.stat(p).st_mode & 0o001]
    if not closed:
        return None
    return (f"run as root, Dovecot's mail processes (user dovecot) cannot reach {mail_dir}: {closed[0]} is "
            f"closed to other users; run as another user")


@dataclass
class DovecotServer:
    """One Dovecot instance: `run_dir` holds its configuration, sockets, log and mailboxes."""

    run_dir: Path
    imap_port: int
    submission_port: int
    service_url: str  # the login service (through the router), e.g. http://127.0.0.1:8000
    client_id: str
    secret: str
    relay_port: int  # where submitted mail goes (a local SMTP server)
    auth_failure_delay: str = "2 secs"  # Dovecot's default; the tests wait less
    mail_dir: Path | None = None  # the mailboxes (Maildirs); default: the run folder's imap/
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.run_dir / "dovecot.log"

    @property
    def config(self) -> Path:
        return self.run_dir / "dovecot.conf"

    def _users(self) -> dict[str, str | int]:
        me = pwd.getpwuid(os.geteuid())
        # Mail is read and written as whoever runs this, but never as root (Dovecot refuses uid 0):
        # then as Debian's `dovecot` user, which must be able to reach the mailbox folder.
        internal, login = (pwd.getpwnam("dovecot"), "dovenull") if me.pw_uid == 0 else (me, me.pw_name)
        return {"internal_user": internal.pw_name, "internal_group": grp.getgrgid(internal.pw_gid).gr_name,
                "login_user": login, "auth_user": me.pw_name, "uid": internal.pw_uid, "gid": internal.pw_gid}

    def render(self) -> None:
        """Write dovecot.conf, the oauth2 passdb's file and the secret (owner-only), and the mailbox root."""
        users = self._users()
        mail_dir = self.mail_dir or self.run_dir / "imap"
        for path in (self.run_dir, self.run_dir / "state", mail_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.geteuid() == 0:
            problem = unreachable(mail_dir)
            if problem:
                raise RuntimeError(problem)
            os.chown(mail_dir, int(users["uid"]), int(users["gid"]))
        base = self.service_url.rstrip("/")
        credentials = f"{self.client_id}:{self.secret}@"
        introspection = base.replace("://", "://" + credentials, 1) + "/oidc/introspect/"
        values = {**users, "base_dir": self.run_dir / "run", "state_dir": self.run_dir / "state",
                  "instance": f"loginsvc-{self.imap_port}", "log": self.log, "mail_dir": mail_dir,
                  "imap_port": self.imap_port, "submission_port": self.submission_port,
                  "relay_port": self.relay_port, "auth_failure_delay": self.auth_failure_delay, "lua_file": TEMPLATES / "mail-check.lua",
                  "oauth2_file": self.run_dir / "dovecot-oauth2.conf.ext", "introspection_url": introspection,
                  "openid_configuration_url": base + "/.well-known/openid-configuration"}
        for name in ("dovecot.conf", "dovecot-oauth2.conf.ext"):
            text = Template((TEMPLATES / (name + ".in")).read_text()).substitute(values)
            target = self.run_dir / name
            target.write_text(text)
            target.chmod(0o600)  # the oauth2 file holds the client's secret
        secret_file = self.run_dir / "mail-check-secret"
        secret_file.write_text(self.secret + "\n")
        secret_file.chmod(0o400)

    def environment(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"), "TZ": "UTC",
                "LOGINSVC_MAIL_CHECK_URL": self.service_url.rstrip("/") + "/api/mail/check",
                "LOGINSVC_MAIL_CHECK_CLIENT": self.client_id,
                "LOGINSVC_MAIL_CHECK_SECRET_FILE": str(self.run_dir / "mail-check-secret")}

    def start(self, timeout: float = 15) -> "DovecotServer":
        self.render()
        self.process = subprocess.Popen(["dovecot", "-F", "-c", str(self.config)], env=self.environment(),
                                        stdout=subprocess.DEVNULL, stderr=open(self.run_dir / "stderr.log", "ab"))
        def listening() -> bool:
            assert self.process is not None and self.process.poll() is None, self.failure()
            return port_open(self.imap_port)

        wait_for(listening, timeout, "Dovecot listening")
        return self

    def failure(self) -> str:
        """What Dovecot said when it stopped (the end of its logs)."""
        tails = [p.read_text(errors="replace")[-2000:] for p in (self.run_dir / "stderr.log", self.log) if p.exists()]
        return "Dovecot stopped: " + " | ".join(tails)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def main(argv: list[str] | None = None) -> int:
    """`python -m deploy.dovecot_server …`: render the configuration and become Dovecot (`make up`'s program)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m deploy.dovecot_server", description=main.__doc__)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--service-url", required=True, help="the login service, through the router")
    parser.add_argument("--client", required=True, help="the mail server's client id")
    parser.add_argument("--secret-file", required=True, type=Path)
    parser.add_argument("--relay-port", required=True, type=int, help="the local SMTP server for submitted mail")
    parser.add_argument("--imap", type=int, default=IMAP_PORT)
    parser.add_argument("--submission", type=int, default=SUBMISSION_PORT)
    parser.add_argument("--mail-dir", type=Path, help="the mailboxes (default: RUN_DIR/imap)")
    args = parser.parse_args(argv)
    problem = missing()
    if problem:
        parser.exit(2, f"dovecot_server: {problem}\n")
    secret = args.secret_file.read_text(encoding="utf-8").strip()
    server = DovecotServer(args.run_dir, args.imap, args.submission, args.service_url, args.client, secret,
                           args.relay_port, mail_dir=args.mail_dir)
    try:
        server.render()
    except RuntimeError as exc:
        parser.exit(2, f"dovecot_server: {exc}\n")
    os.execvpe("dovecot", ["dovecot", "-F", "-c", str(server.config)], server.environment())
    return 1  # not reached: exec replaced this process


class ImapClient(imaplib.IMAP4):
    """imaplib's client on a Dovecot of this machine, connecting from a chosen loopback address: Dovecot keeps its
    auth penalty per client address, so tests and load runs spread their logins over 127/8."""

    def __init__(self, port: int, source: str, timeout: float = 10.0) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


if __name__ == "__main__":
    raise SystemExit(main())
