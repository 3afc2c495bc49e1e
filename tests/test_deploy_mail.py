"""`make up`'s mail: the real local SMTP server (python -m deploy.mail_server) stores every message privately in a
Maildir, and `python -m deploy mail` shows what a person needs from it (the text part), now or as it arrives."""
from __future__ import annotations

import email
import email.policy
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from deploy import mail_server
from deploy.maildir import stored_at
from deploy.node import free_port, wait_port
from tests.support import ROOT, wait_for

SUBJECT = "Votre code de récupération ✓"
CODE = "Code: 493 118"


@dataclass
class MailServer:
    process: subprocess.Popen[bytes]
    port: int
    var_dir: Path
    log: Path

    @property
    def maildir(self) -> Path:
        return self.var_dir / "mail"

    def send(self, message: EmailMessage, to: list[str] | None = None) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname="localhost", timeout=5) as smtp:
            smtp.send_message(message, to_addrs=to)

    def new(self) -> list[Path]:
        """The new messages, oldest first, by the time in their Maildir names (deploy/maildir.py)."""
        return sorted((self.maildir / "new").iterdir(), key=lambda path: (stored_at(path), path.name))


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env(), capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout)


def plain(subject: str = "Welcome", body: str = "Hello.\n") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "login@example.test", "ann@example.test", subject
    message.set_content(body)
    return message


def recovery_code() -> EmailMessage:
    """What the recovery mail looks like: text and HTML alternatives, a non-ASCII subject."""
    message = plain(SUBJECT, f"{CODE}\n")
    message.add_alternative(f"<p>HTML only: <b>{CODE}</b></p>", subtype="html")
    return message


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MailServer]:
    port, log = free_port(), tmp_path / "mail.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "deploy.mail_server", "--listen", f"127.0.0.1:{port}",
                                    "--maildir", str(tmp_path / "mail")], cwd=ROOT, env=env(), stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        yield MailServer(process, port, tmp_path, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_each_message_is_one_private_file_in_new_with_its_envelope(server: MailServer) -> None:
    server.send(plain())
    server.send(recovery_code(), to=["ann@example.test", "hidden@example.test"])
    first, second = server.new()
    stored = email.message_from_bytes(second.read_bytes(), policy=email.policy.default)
    assert stored["Subject"] == SUBJECT
    assert stored["X-Envelope-From"] == "<login@example.test>"
    assert stored["X-Envelope-To"] == "ann@example.test, hidden@example.test"   # a Bcc shows only here
    assert stored.get_body(preferencelist=("plain",)).get_content() == f"{CODE}\n"
    assert b"\r\n" not in second.read_bytes()   # the local line ending, as Maildir readers expect
    assert email.message_from_bytes(first.read_bytes(), policy=email.policy.default)["Subject"] == "Welcome"
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [server.maildir, server.maildir / "new", first, second]}
    assert modes == {"mail": "0o700", "new": "0o700", first.name: "0o600", second.name: "0o600"}
    # One log line per message, naming it without its body.
    log = server.log.read_text(encoding="utf-8").splitlines()
    received = [line for line in log if " from=<login@example.test> " in line]
    assert len(received) == 2 and SUBJECT in received[1] and "hidden@example.test" in received[1], log
    assert not any(CODE in line for line in log), log


def test_a_message_over_10_mib_is_refused_and_nothing_is_stored(server: MailServer) -> None:
    with pytest.raises(smtplib.SMTPResponseException) as refused:
        server.send(plain("Too big", "x" * (10 * 1024 * 1024) + "\n"))
    assert refused.value.smtp_code == 552
    server.send(plain("Small"))
    assert len(server.new()) == 1


def test_sigterm_stops_the_server_within_two_seconds_with_exit_0(server: MailServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="localhost", timeout=5):  # an open session too
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(2) == 0
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("listen", ["0.0.0.0:8025", "[::]:8025", "192.0.2.1:8025", "mail.example.test:25",
                                    "127.0.0.1", "127.0.0.1:0", "::1:8025"])
def test_a_non_loopback_or_bad_listen_address_exits_2_with_one_line(
        listen: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mail_server.main(["--listen", listen, "--maildir", str(tmp_path / "mail")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--listen" in err, err
    assert not (tmp_path / "mail").exists()


def test_deploy_mail_prints_the_latest_message_with_its_text_part_not_the_html(server: MailServer) -> None:
    server.send(plain("Older message"))
    server.send(recovery_code())
    result = run("deploy", "mail", "-n", "1", "--var-dir", str(server.var_dir))
    assert result.returncode == 0, result
    assert f"Subject: {SUBJECT}" in result.stdout and CODE in result.stdout, result.stdout
    assert "HTML only" not in result.stdout and "Older message" not in result.stdout, result.stdout
    assert "From: login@example.test" in result.stdout and "To: ann@example.test" in result.stdout


def test_deploy_mail_without_a_maildir_says_so_and_exits_0(tmp_path: Path) -> None:
    result = run("deploy", "mail", "--var-dir", str(tmp_path))
    assert result.returncode == 0 and result.stdout.startswith("no mail yet") and len(result.stdout.splitlines()) == 1


def test_follow_prints_a_message_sent_after_it_started_and_ctrl_c_exits_0(server: MailServer) -> None:
    server.send(plain("Before following"))
    follower = subprocess.Popen([sys.executable, "-m", "deploy", "mail", "--follow", "-n", "1", "--var-dir",
                                 str(server.var_dir)], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, encoding="utf-8")
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(follower.stdout), daemon=True).start()
    try:
        wait_for(lambda: "Before following" in "".join(output), 10, "the latest message printed")
        server.send(recovery_code())
        wait_for(lambda: CODE in "".join(output), 5, "the new message printed")
        follower.send_signal(signal.SIGINT)
        assert follower.wait(5) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert f"Subject: {SUBJECT}" in "".join(output) and "HTML only" not in "".join(output)


def test_follow_and_failed_together_exit_2_with_one_line(tmp_path: Path) -> None:
    result = run("deploy", "mail", "--follow", "--failed", "--var-dir", str(tmp_path))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and result.stdout == "", result


def test_messages_are_ordered_by_the_microsecond_in_their_names_not_by_mtime_or_text(tmp_path: Path) -> None:
    """Two mails stored in one timer tick share an mtime; their names still order them, numerically."""
    from deploy.cli import mail_files
    from deploy.maildir import message_id
    for sub in ("new", "cur"):
        (tmp_path / sub).mkdir()
    later = tmp_path / "new" / "1796611456.M101234P77Q1.localhost"     # "M1…" sorts first as text
    earlier = tmp_path / "cur" / "1796611456.M99871P77Q2.localhost:2,S"
    foreign = tmp_path / "new" / "written-by-another-program"
    for path, mtime in ((later, 1_796_611_450), (earlier, 1_796_611_456), (foreign, 1_796_611_457)):
        path.write_text("x")
        os.utime(path, ns=(0, mtime * 10**9))       # later's mtime would put it first; foreign has only its mtime
    assert mail_files(tmp_path) == [earlier, later, foreign]
    assert stored_at(earlier) == 1796611456.099871 and stored_at(foreign) == 1796611457.0
    assert message_id(earlier.name) == "1796611456.M99871P77Q2.localhost"
