"""The password recovery journey: a code asked by mail at a fixed low rate, so the mail outbox's delay to delivery is measured per cluster (loadtests/mail_delay.py).

One RecoveryUser per run (fixed_count; the scenario's shape adds it to the users it asks for, so the other
journeys keep their numbers and the open model its rate): every 60/N seconds (`--recovery-per-minute N`,
default 4), with a random first phase, it opens /recover/ (the page's CSRF token) and posts
/api/recover {"email"} with the token in X-CSRFToken, as the page's script does; 202 is the one answer.
It never confirms: a confirmed code changes the account's password, which the other journeys sign in with;
asking alone changes nothing of the account. The answer's X-Served-By names the cluster that queued the mail.

Two limits of the service shape the journey (loginsvc/conf.py): at most RECOVERY_CODES_PER_HOUR (5) codes per
address per hour, beyond which the answer is still 202 but no mail goes; and RECOVERY_IP_REQUESTS (20) asks
per client address per hour, beyond which 429. So each ask goes to the least recently asked of the run's
accounts that has had fewer than the limit in the past hour (counting the recovery mails the Maildir holds
from earlier runs, when this process can read it), and a turn with none asks nothing (counted as skipped);
and each ask comes from the next of 254 loopback source addresses (127.0.1.1-254; the router passes the peer
on as X-Forwarded-For): at the highest rate, 60/min, one address is used 14 times an hour.
"""
from __future__ import annotations

import random
import time

import gevent
from locust import User, task
from locust.clients import HttpSession

from loadtests import mail_index, run_settings
from loadtests.journeys import SourceAddressAdapter, csrf_of
from loadtests.mail_delay import ACCEPTED, WINDOW_SECONDS, Asked
from loadtests.pacing import RECOVERY_MAX_PER_MINUTE, RecoveryAccounts, RecoverySchedule

SOURCES = tuple(f"127.0.1.{i}" for i in range(1, 255))   # apart from the wrong passwords' 127.0.0.10-41


class RecoveryUser(User):
    """Asks for a password recovery code at the run's fixed low rate and records each ask for the mail delay."""

    fixed_count = 1     # one per run, whatever the users: the shape adds it (loadtests/locustfile.py)

    def on_start(self) -> None:
        run = run_settings.current(self.environment)
        self.settings, self.mail = run, self.environment.loadtests.mail
        self.schedule = RecoverySchedule(min(RECOVERY_MAX_PER_MINUTE, run.recovery_per_minute or 1.0))
        self.accounts = RecoveryAccounts(run.accounts, run.recovery_limit, self.history())
        self.turn = random.randrange(len(SOURCES))
        gevent.sleep(self.schedule.wait())   # the random phase: the first ask is not at the very start

    def history(self) -> list[tuple[str, float]]:
        """The recovery mails of the past hour, as the reporting process read them, or from this machine's Maildir
        (a worker elsewhere has none: it counts only its own asks)."""
        index = self.mail.index
        if index is not None:
            mails = index.mails
        else:
            mails = mail_index.recent(self.settings.maildir, time.time() - WINDOW_SECONDS)
        return [(m.recipient, m.received) for m in mails]

    def wait_time(self) -> float:
        return self.schedule.wait()

    @task
    def ask_for_a_code(self) -> None:
        account = self.accounts.take()
        if account is None:
            self.mail.skip()
            return
        self.turn += 1
        self.ask(account, SOURCES[self.turn % len(SOURCES)])

    def ask(self, account: str, source: str) -> None:
        """The recovery page (its CSRF token), then the JSON ask, from `source`; a new browser each time."""
        session = HttpSession(self.host, self.environment.events.request, user=self)
        adapter = SourceAddressAdapter(source)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            with session.get("/recover/", name="recover-page", catch_response=True) as page:
                token = csrf_of(page.text or "") if page.status_code == 200 else None
                if token is None:
                    page.failure(f"recover-page: {page.status_code}, no CSRF token")
                    return
            sent = time.time()
            with session.post("/api/recover", json={"email": account}, headers={"X-CSRFToken": token},
                              name="recover", allow_redirects=False, catch_response=True) as answer:
                status = int(answer.status_code or 0)
                if status != ACCEPTED:
                    answer.failure(f"recover: {status}, expected 202 (429: too many asks from one address)")
                served = (answer.headers or {}).get("X-Served-By") if status else None
            self.mail.add(Asked(account, served.split("/", 1)[0] if served else None, sent, status))
        finally:
            session.close()
