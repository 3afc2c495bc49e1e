"""The mail delay of a load run: each recovery code asked (loadtests/recovery.py) matched to its mail in the Maildir, and p50/p95/p99 of request → received per cluster."""
# Why match by recipient and time rather than by code: the code is the secret the service hands out only by mail,
# so the request cannot know it. The journey asks for one account at a time and spreads its asks over the
# accounts (hours apart per account at its rate), so "the first mail to that address received after the
# request" is unambiguous. Why a request can expect no mail: the service mails at most RECOVERY_CODES_PER_HOUR
# codes per address per hour and still answers 202 (it must not tell); such a request is `limited`, not lost.
from __future__ import annotations

import math
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.latency import UNATTRIBUTED
from loadtests.mail_index import Mail, MailIndex
from loadtests.pacing import RECOVERY_WINDOW

ACCEPTED = 202                 # /api/recover's one answer for an address, known or not
DELIVERED, LOST, LIMITED, REFUSED = "delivered", "lost", "limited", "refused"
WINDOW_SECONDS = RECOVERY_WINDOW   # the service's codes-per-hour window (selfservice/recovery.py)
MAX_ASKED = 100_000            # a day at the journey's highest rate (60/min) is 86,400
MAX_SAMPLES = 10_000           # per-request rows kept in summary.json
POLL_SECONDS = 0.5
PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}
COLUMNS = ("asked", "delivered", "lost", "limited", "refused")


@dataclass(frozen=True)
class Asked:
    """One POST /api/recover: for whom, which cluster answered (X-Served-By), when it was sent (epoch s), status."""

    email: str
    cluster: str | None
    sent: float
    status: int                # 0: no answer (refused connection, timeout)

    def row(self) -> list[Any]:
        return [self.email, self.cluster, self.sent, self.status]


@dataclass(frozen=True)
class Outcome:
    asked: Asked
    state: str                 # DELIVERED, LOST (no mail yet / by the end), LIMITED, REFUSED
    delay: float | None        # seconds from the request's send to the mail's arrival (DELIVERED only)


def match(asked: Iterable[Asked], mails: Iterable[Mail], limit: int, window: float = WINDOW_SECONDS) -> list[Outcome]:
    """Each request's outcome, in the order they were sent. A 202 is `limited` when the address already had
    `limit` codes in the `window` before it: this run's own earlier asks that were not limited, plus mails to it
    from elsewhere (an earlier run, a person) received in that window; otherwise it takes the first mail to the
    address received after it that no earlier request took, or is lost (so far). O(n log n): it runs while the
    generator does (the live line)."""
    boxes: dict[str, list[Mail]] = {}
    for mail in sorted(mails, key=lambda m: m.received):
        boxes.setdefault(mail.recipient, []).append(mail)
    times = {address: [m.received for m in box] for address, box in boxes.items()}
    taken_names: set[str] = set()
    taken: dict[str, list[float]] = {}   # address -> when the mails earlier asks took were received (sorted)
    codes: dict[str, list[float]] = {}   # address -> when this run's asks made a code (their send times, sorted)
    outcomes = []
    for request in sorted(asked, key=lambda a: a.sent):
        if request.status != ACCEPTED:
            outcomes.append(Outcome(request, REFUSED, None))
            continue
        address, horizon = request.email.lower(), request.sent - window
        box, received = boxes.get(address, []), times.get(address, [])
        mine, took = codes.setdefault(address, []), taken.setdefault(address, [])
        ours = len(mine) - bisect_right(mine, horizon)
        theirs = (bisect_right(received, request.sent) - bisect_right(received, horizon)
                  - (bisect_right(took, request.sent) - bisect_right(took, horizon)))
        if ours + theirs >= limit:
            outcomes.append(Outcome(request, LIMITED, None))
            continue
        mine.append(request.sent)
        first = bisect_left(received, request.sent)
        while first < len(box) and box[first].name in taken_names:
            first += 1
        if first == len(box):
            outcomes.append(Outcome(request, LOST, None))
            continue
        taken_names.add(box[first].name)
        insort(took, box[first].received)
        outcomes.append(Outcome(request, DELIVERED, box[first].received - request.sent))
    return outcomes


def _rank(ordered: Sequence[float], percentile: float) -> float:
    """Nearest rank, as the timeline's figures: an observed delay, never an interpolation."""
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


def group_figures(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Counts by outcome and the delays' p50/p95/p99/max in milliseconds (None without a delivered mail)."""
    result: dict[str, Any] = {"asked": len(outcomes)}
    for state in (DELIVERED, LOST, LIMITED, REFUSED):
        result[state] = sum(1 for o in outcomes if o.state == state)
    delays = sorted(o.delay for o in outcomes if o.delay is not None)
    for name, percentile in PERCENTILES.items():
        result[name] = round(_rank(delays, percentile) * 1000, 1) if delays else None
    result["max"] = round(delays[-1] * 1000, 1) if delays else None
    return result


def figures(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """summary.json's `mail` figures: per cluster that answered the request (or unattributed), and in all."""
    clusters: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        clusters.setdefault(outcome.asked.cluster or UNATTRIBUTED, []).append(outcome)
    return {"clusters": {name: group_figures(group) for name, group in sorted(clusters.items())},
            "total": group_figures(outcomes)}


class MailDelay:
    """The recovery journey's asks in one process (a worker ships them to the master with its stats), and on the
    process that reports, the Maildir they are matched to."""

    def __init__(self) -> None:
        self.asked: list[Asked] = []
        self.skipped = 0           # turns with no account under its hourly limit (the journey asked nothing)
        self.index: MailIndex | None = None
        self.maildir: Path | None = None
        self.limit, self.started, self.waited = 0, 0.0, 0.0
        self.counted: tuple[tuple[int, int], tuple[int, int], float] = ((0, 0), (0, 0), 0.0)   # key, counts, when

    def add(self, asked: Asked) -> None:
        if len(self.asked) < MAX_ASKED:
            self.asked.append(asked)

    def skip(self) -> None:
        self.skipped += 1

    def drain(self) -> dict[str, Any]:
        """What this process asked since the last drain, JSON-able (a worker's report), then forgotten."""
        data = {"asked": [a.row() for a in self.asked], "skipped": self.skipped}
        self.asked, self.skipped = [], 0
        return data

    def merge(self, data: Mapping[str, Any]) -> None:
        for email, cluster, sent, status in data.get("asked") or []:
            self.add(Asked(str(email), cluster, float(sent), int(status)))
        self.skipped += int(data.get("skipped") or 0)

    def watch(self, maildir: Path, started: float, limit: int) -> None:
        """Start matching against the Maildir at `maildir`: the mails of the hour before the run count against
        the accounts' limits, so they are read now, before the users start."""
        self.maildir, self.started, self.limit = maildir, started, limit
        self.index = MailIndex(maildir, started - WINDOW_SECONDS) if maildir.is_dir() else None
        self.poll()

    def poll(self) -> None:
        if self.index is not None:
            self.index.scan()

    def outcomes(self) -> list[Outcome]:
        return match(self.asked, self.index.mails if self.index else [], self.limit)

    def counts(self) -> tuple[int, int]:
        """(delivered, expected) so far, for the live progress line: matched again only when something new came,
        and in a long run at most once per second per 1,000 asks (a match of 86,400 asks stalls the loop ~0.3 s)."""
        key = (len(self.asked), len(self.index.mails) if self.index else 0)
        if key != self.counted[0] and time.monotonic() - self.counted[2] >= max(0.0, len(self.asked) / 1000):
            outcomes = self.outcomes()
            self.counted = (key, (sum(1 for o in outcomes if o.state == DELIVERED),
                                  sum(1 for o in outcomes if o.state in (DELIVERED, LOST))), time.monotonic())
        return self.counted[1]

    def wait(self, grace: float, sleep: Callable[[float], Any] = time.sleep) -> None:
        """After the run: read the Maildir until every mail due has come, for `grace` seconds at most."""
        begun = time.monotonic()
        while self.index is not None:
            self.poll()
            left = grace - (time.monotonic() - begun)
            if left <= 0 or not any(o.state == LOST for o in self.outcomes()):
                break
            sleep(min(POLL_SECONDS, left))
        self.waited = time.monotonic() - begun

    def summary(self, per_minute: float, grace: float) -> dict[str, Any]:
        """summary.json's `mail`: the settings, the figures, a note when something kept them from meaning much,
        and each request (seconds since the start, cluster, outcome, delay in ms)."""
        outcomes = self.outcomes()
        result: dict[str, Any] = {"journey": "recovery", "per_minute": per_minute, "limit_per_hour": self.limit,
                                  "grace_s": grace, "waited_s": round(self.waited, 3), "skipped": self.skipped,
                                  **figures(outcomes), "note": self.note(outcomes)}
        result["requests"] = [[round(o.asked.sent - self.started, 3), o.asked.cluster, o.state,
                               None if o.delay is None else round(o.delay * 1000, 1)] for o in outcomes[:MAX_SAMPLES]]
        return result

    def note(self, outcomes: Sequence[Outcome]) -> str | None:
        if self.index is None:
            return f"no Maildir at {self.maildir}: the mail was not measured"
        states = [o.state for o in outcomes]
        if LOST in states and DELIVERED not in states:
            return ("no recovery mail reached the Maildir: do the nodes send elsewhere (EMAIL_URL)? Then run with "
                    "--recovery-per-minute 0")
        if self.skipped:
            return (f"{self.skipped} turn(s) asked nothing: every account had its {self.limit} codes of the hour "
                    "(more accounts, or a lower --recovery-per-minute)")
        return None


def rows(mail: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the mail delay table, for the terminal and report.html alike; delays in ms, as every
    other table of the run."""
    header = ["", *COLUMNS, *(f"{name} ms" for name in (*PERCENTILES, "max"))]
    groups = [(f"cluster {name}", figs) for name, figs in (mail.get("clusters") or {}).items()]
    body = []
    for label, figs in [*groups, ("total", mail.get("total") or {})]:
        body.append([label, *(f"{int(figs.get(c) or 0):,}" for c in COLUMNS),
                     *("-" if figs.get(p) is None else f"{float(figs[p]):,.1f}" for p in (*PERCENTILES, "max"))])
    return header, body


def title(mail: Mapping[str, Any]) -> str:
    return (f"mail delay: password recovery codes at {float(mail.get('per_minute') or 0):g}/min, request -> received "
            f"in the Maildir, by the cluster that answered (limit {mail.get('limit_per_hour')}/h per account; waited "
            f"{float(mail.get('waited_s') or 0):.1f} s of {float(mail.get('grace_s') or 0):g} s after the run)")


def lines(summary: Mapping[str, Any]) -> list[str]:
    """The mail delay table for the terminal (nothing for a run without the recovery journey)."""
    mail = summary.get("mail")
    if not mail:
        return []
    return [title(mail), *aligned(*rows(mail)), *([f"note: {mail['note']}"] if mail.get("note") else [])]


def aligned(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """A table for the terminal: the first column left-aligned, the others right-aligned (every table of a run)."""
    widths = [max(len(cells[i]) for cells in (header, *body)) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                      for i, (cell, width) in enumerate(zip(cells, widths))).rstrip() for cells in (header, *body)]
