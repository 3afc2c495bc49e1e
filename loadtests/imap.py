"""The IMAP journey: app-password logins to the stack's Dovecot at a fixed rate, so a mail client's login time (Dovecot asking the login service each time) is measured, and gated with `--slo imap:p99<…`."""
# One ImapUser per run (fixed_count; the shape adds it on top of the scenario's users, loadtests/locustfile.py). At
# the start it signs in over HTTP, through the router as the journeys do, with up to ACCOUNTS of the run's password
# accounts, revokes any app password an earlier run left (APP_PASSWORD_NAME) and makes one with scope imap; at the
# end it revokes them (an account holds at most 20). Then, on a fixed schedule of `--imap-per-second N` from a
# random phase (pacing.Pacing, the open model's), each turn opens a new connection to 127.0.0.1:PORT from the next of
# 254 loopback source addresses (127.0.2.1-254, apart from the other journeys'), and sends LOGIN (timed as `imap`:
# connect, greeting and LOGIN's answer, which waits for Dovecot's POST /api/mail/check), SELECT INBOX (`imap-select`,
# Dovecot's mail process) and LOGOUT. Each login runs in its own greenlet, at most MAX_IN_FLIGHT at once, so a slow
# login does not hold back the schedule; a turn that had to wait for a free slot charges its lateness to its
# requests (`lag`: corrected latency). A refused LOGIN (NO), a connection refused or a timeout is a failure.
from __future__ import annotations

import imaplib
import random
import time
from dataclasses import dataclass
from gevent.pool import Pool
from locust import User, task
from locust.clients import HttpSession

from deploy.dovecot_server import ImapClient
from loadtests import pacing, run_settings
from loadtests.journeys import csrf_of

REQUEST_TYPE = "IMAP"
LOGIN, SELECT = "imap", "imap-select"      # request names: `--slo imap:p99<200`
APP_PASSWORD_NAME = "loadtest imap"        # what an earlier run's leftovers are known by
MAX_IN_FLIGHT = 32                         # logins open at once; Dovecot's default limits are far above
TIMEOUT = 10.0                             # seconds for the connection and each command
SOURCES = tuple(f"127.0.2.{i}" for i in range(1, 255))


@dataclass(frozen=True)
class AppPassword:
    email: str
    id: str
    password: str


class AppPasswords:
    """The run's app passwords, made and revoked through the product's own API with a signed-in browser session each."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.sessions: dict[str, HttpSession] = {}
        self.made: list[AppPassword] = []

    def _session(self) -> HttpSession:
        return HttpSession(self.user.host, self.user.environment.events.request, user=self.user)

    def sign_in(self, email: str, password: str) -> HttpSession | None:
        """The login page and its form, as the journeys sign in: a session fresh enough to make app passwords."""
        session = self._session()
        with session.get("/login/", name="imap-setup", catch_response=True) as page:
            token = csrf_of(page.text or "") if page.status_code == 200 else None
            if token is None:
                page.failure(f"imap-setup: login page {page.status_code}, no CSRF token")
                return None
        form = {"csrfmiddlewaretoken": token, "username": email, "password": password, "next": ""}
        with session.post("/login/", data=form, name="imap-setup", allow_redirects=False, catch_response=True) as done:
            if done.status_code != 302:
                done.failure(f"imap-setup: sign-in {done.status_code}, expected 302")
                return None
        self.sessions[email] = session
        return session

    @staticmethod
    def _csrf(session: HttpSession) -> dict[str, str]:
        return {"X-CSRFToken": session.cookies.get("csrftoken") or ""}

    def make(self, email: str, password: str) -> AppPassword | None:
        """Sign in, revoke what an earlier run left under APP_PASSWORD_NAME, make one with scope imap."""
        session = self.sign_in(email, password)
        if session is None:
            return None
        listed = session.get("/api/app-passwords", name="imap-setup")
        for old in (listed.json().get("app_passwords", []) if listed.status_code == 200 else []):
            if old.get("name") == APP_PASSWORD_NAME:
                self.revoke_one(session, str(old.get("id")))
        with session.post("/api/app-passwords", json={"name": APP_PASSWORD_NAME, "scope": "imap"},
                          headers=self._csrf(session), name="app-password", catch_response=True) as answer:
            if answer.status_code != 201:
                answer.failure(f"app-password: {answer.status_code}, expected 201")
                return None
            made = answer.json()
        found = AppPassword(email, str(made["id"]), str(made["password"]))
        self.made.append(found)
        return found

    def revoke_one(self, session: HttpSession, public_id: str) -> None:
        session.delete(f"/api/app-passwords/{public_id}", headers=self._csrf(session), name="app-password-revoke")

    def revoke_all(self) -> None:
        """At the end of the run: every app password this run made; then the sessions are closed."""
        made, self.made = self.made, []
        for app_password in made:
            self.revoke_one(self.sessions[app_password.email], app_password.id)
        for session in self.sessions.values():
            session.close()
        self.sessions = {}


class ImapUser(User):
    """Logs in to Dovecot over IMAP with the run's app passwords at the run's fixed rate (`--imap-per-second`)."""

    fixed_count = 1     # one per run, whatever the users: the shape adds it (loadtests/locustfile.py)

    def on_start(self) -> None:
        run = run_settings.current(self.environment)
        self.port = run.imap_port
        self.app_passwords = AppPasswords(self)
        for email in run.password_accounts[:run_settings.IMAP_ACCOUNTS]:
            self.app_passwords.make(email, run.passwords[email])
        self.logins = list(self.app_passwords.made)   # none: every turn fails (and set-up's failures are in the figures)
        self.pacing = pacing.Pacing(1, lambda _elapsed: run.imap_per_second or 1.0, time.time())
        self.pool = Pool(MAX_IN_FLIGHT)
        self.turn = random.randrange(len(SOURCES))

    def on_stop(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.join(timeout=TIMEOUT)   # the logins under way report; none is left running past the run
            pool.kill(block=True, timeout=1.0)
        if hasattr(self, "app_passwords"):
            self.app_passwords.revoke_all()

    def wait_time(self) -> float:
        return self.pacing.wait()

    @task
    def log_in(self) -> None:
        due = self.pacing.due or time.time()
        self.pool.wait_available()   # all MAX_IN_FLIGHT busy: this turn starts late and says so (lag)
        self.turn += 1
        if not self.logins:
            self.fire(LOGIN, time.time(), 0.0, RuntimeError("no app password could be made (see imap-setup, app-password)"))
            return
        login = self.logins[self.turn % len(self.logins)]
        self.pool.spawn(self.session, login, SOURCES[self.turn % len(SOURCES)], due)

    def fire(self, name: str, sent: float, lag: float, exception: BaseException | None) -> None:
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE, name=name, response_time=(time.time() - sent) * 1000, response_length=0,
            response=None, context={"lag": lag}, exception=exception, start_time=sent)

    def session(self, login: AppPassword, source: str, due: float) -> None:
        """One mail client's visit: connect, LOGIN, SELECT INBOX, LOGOUT; LOGIN and SELECT timed."""
        sent = time.time()
        lag = max(0.0, sent - due)
        client = None
        try:
            client = ImapClient(self.port, source, TIMEOUT)
            client.login(login.email, login.password)
        except (OSError, imaplib.IMAP4.error) as exc:
            self.fire(LOGIN, sent, lag, exc)
            if client is not None:
                client.shutdown()
            return
        self.fire(LOGIN, sent, lag, None)
        selected = time.time()
        try:
            status, detail = client.select("INBOX")
            self.fire(SELECT, selected, lag, None if status == "OK" else imaplib.IMAP4.error(f"SELECT INBOX: {detail!r}"))
        except (OSError, imaplib.IMAP4.error) as exc:
            self.fire(SELECT, selected, lag, exc)
        try:
            client.logout()   # untimed: a client's goodbye; a connection already broken is closed all the same
        except (OSError, imaplib.IMAP4.error):
            client.shutdown()

