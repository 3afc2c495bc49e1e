"""The brute-force counters on the ThrottleState table, for when Redis cannot be reached (throttle.py).

Every row an attempt touches is locked (`select_for_update`) *before* any lock is checked, and
in one order (by key) for every attempt, so that parallel attempts queue on the rows instead of
all reading "not locked" and passing (on PostgreSQL; SQLite serialises writers anyway), and two
attempts can never wait on each other's rows.
"""
from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from loginsvc import conf
from sharedlib.throttle_rules import Counter, Rule


def _model():  # noqa: ANN202 - the model class; imported late, this module loads before the apps
    from loginsvc.accounts.models import ThrottleState

    return ThrottleState


class DatabaseStore:
    """The same operations as throttle.RedisStore, with row locks instead of a Lua script."""

    def locked_for(self, counters: list[Counter]) -> tuple[int, str]:
        """The longest lock among these counters (seconds) and its scope; a plain read, used
        while Redis answers, to honour locks set during an outage."""
        now = timezone.now()
        scopes = {c.key: c.scope for c in counters}
        rows = _model().objects.filter(key__in=list(scopes), locked_until__gt=now).values_list("key", "locked_until")
        waits = [(math.ceil((until - now).total_seconds()), scopes[key]) for key, until in rows]
        return max(waits, default=(0, ""))

    def _locked_rows(self, keys: list[str], now: datetime) -> dict:
        """Each key's row, created if missing, locked until the transaction ends; in key order."""
        rows = {}
        for key in sorted(keys):
            rows[key], _ = _model().objects.select_for_update().get_or_create(
                key=key, defaults={"expires_at": now, "failures": 0})
        return rows

    @staticmethod
    def _bump(row, rule: Rule, now: datetime) -> int:  # noqa: ANN001 - a ThrottleState
        if row.expires_at <= now:
            row.failures, row.locked_until = 0, None
            row.expires_at = now + timedelta(seconds=rule.window_seconds)
        row.failures += 1
        if rule.sliding:
            row.expires_at = now + timedelta(seconds=rule.window_seconds)
        seconds, flag = rule.lock(row.failures)
        if seconds:
            row.locked_until = now + timedelta(seconds=seconds)
        row.save()
        return flag

    def begin(self, counters: tuple[Counter, ...], notice_key: str, notice: int) -> tuple[bool, int, str, list[int]]:
        now = timezone.now()
        with transaction.atomic():
            # The notice row only when there is something to note: a re-run of a refused attempt
            # (throttle.begin, count=False) and the step-up budget note nothing.
            rows = self._locked_rows([c.key for c in counters] + ([notice_key] if notice else []), now)
            if notice:
                self._note(rows[notice_key], notice, now)
            waits = [(math.ceil((rows[c.key].locked_until - now).total_seconds()), c.scope) for c in counters
                     if c.enforced and rows[c.key].locked_until and rows[c.key].locked_until > now]
            if waits:
                wait, scope = max(waits)
                return False, wait, scope, []
            flags = [self._bump(rows[c.key], c.rule, now) for c in counters]
        if random.random() < 0.01:
            self.purge(now)
        return True, 0, "", flags

    @staticmethod
    def _note(row, notice: int, now: datetime) -> None:  # noqa: ANN001 - a ThrottleState
        if row.expires_at <= now:
            row.failures = 0
        row.failures += notice
        row.expires_at = now + timedelta(seconds=conf.get("LOGIN_NOTICE_SECONDS"))
        row.save()

    def succeed(self, counters: tuple[Counter, ...], own_locks: list[Counter], notice_key: str) -> int:
        """Clear the pair (the first counter), give the attempt back to the others, lift the soft
        locks this attempt set; returns (and forgets) the notice count."""
        model = _model()
        with transaction.atomic():
            model.objects.filter(key=counters[0].key).delete()
            model.objects.filter(key__in=[c.key for c in counters[1:]], failures__gt=0).update(failures=F("failures") - 1)
            model.objects.filter(key__in=[c.key for c in own_locks]).update(locked_until=None)
            return self.take_notice(notice_key)

    def count(self, key: str) -> int:
        """A counter's failures in its current window (0 if none): a plain read."""
        found = _model().objects.filter(key=key, expires_at__gt=timezone.now()).values_list("failures", flat=True)
        return max(found, default=0)

    def give_back(self, counters: tuple[Counter, ...]) -> None:
        """One failure fewer on each of `counters` (throttle.gave_password)."""
        _model().objects.filter(key__in=[c.key for c in counters], failures__gt=0).update(failures=F("failures") - 1)

    def take_notice(self, notice_key: str) -> int:
        """The attempts noted for the account here (0 if none), deleting the row."""
        rows = _model().objects.filter(key=notice_key)
        found = list(rows.values_list("failures", "expires_at"))  # usually none: one query
        if not found:
            return 0
        rows.delete()
        now = timezone.now()
        return sum(failures for failures, expires_at in found if expires_at > now)

    def purge(self, now: datetime) -> int:
        """Delete rows whose window and lock are both over, so an outage leaves no lasting table growth."""
        ended = Q(expires_at__lte=now) & (Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        return _model().objects.filter(ended).delete()[0]
