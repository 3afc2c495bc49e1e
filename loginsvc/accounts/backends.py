"""Authentication backend: Django's ModelBackend plus a per-process cache of session users that
every node invalidates at once.

Every request of a logged-in browser asks "who is user N?". Answering from the database costs
more than the whole rest of GET /api/session, so each process keeps users for up to
USER_CACHE_SECONDS (default 5 s; 0 turns it off), but reuses one only while its auth-epoch
counters in Redis are unchanged (auth_epoch.py: one MGET per request). A save, delete or bulk
update of a user on any node changes them after the commit, so a deactivation, password change
or "sign out everywhere" is seen by every process on its next request. When Redis cannot answer,
nothing is reused: users come from the database, which is always right.
"""
from __future__ import annotations

import copy
import time
from collections import OrderedDict
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from loginsvc import conf
from loginsvc.accounts import auth_epoch
from loginsvc.accounts.models import User, normalise_email

MAX_ENTRIES = 10_000
_users: OrderedDict[str, tuple[float, User, auth_epoch.Stamp]] = OrderedDict()


def _lookup(user_id: str, now: float, counters: auth_epoch.Stamp | None = None,
            ) -> tuple[User | None, auth_epoch.Stamp | None]:
    """The cached user if still valid (or None), and the current counters (None: Redis cannot say).
    `counters`: the user's counters if the caller has just read them (the fast path pipelines them)."""
    entry = _users.get(user_id)
    if entry is not None and entry[0] <= now:
        _users.pop(user_id, None)
        entry = None
    current = counters if counters is not None else auth_epoch.stamp(user_id)
    if current is None:
        _users.clear()  # cannot tell what changed meanwhile: start afresh once Redis answers
        return None, None
    if entry is not None and entry[2] == current:
        return entry[1], current
    return None, current


def cached_user(user_id: str, now: float | None = None, counters: auth_epoch.Stamp | None = None,
                ) -> User | None:
    """The user this process may still reuse for `user_id` (text), or None; never queries the
    database (one Redis MGET, to learn whether the user changed anywhere, unless `counters` holds
    what the caller just read from Redis for this user).

    The cache only ever holds users ModelBackend.get_user returned, so only active ones. The
    object is the cache's own: read it, do not change it (get_user hands out copies).
    """
    if conf.get("USER_CACHE_SECONDS") <= 0 or user_id not in _users:
        return None
    return _lookup(user_id, time.monotonic() if now is None else now, counters)[0]


class CachedModelBackend(ModelBackend):
    def authenticate(self, request: Any, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> User | None:
        """ModelBackend's password check, with the account read together with its second factors
        (mfa/factors.user_with_factors): the sign-in asks for them next, and one query is cheaper than
        four. An unknown address still runs the hasher, as in ModelBackend, so timing tells nothing."""
        from loginsvc.mfa.factors import user_with_factors  # the mfa app's models load after this module

        if username is None or password is None:
            return None
        user = user_with_factors(email=normalise_email(username))
        if user is None:
            User().set_password(password)
            return None
        return user if user.check_password(password) and self.user_can_authenticate(user) else None

    def get_user(self, user_id: Any) -> User | None:
        ttl = conf.get("USER_CACHE_SECONDS")
        if ttl <= 0:
            return super().get_user(user_id)
        now = time.monotonic()
        user_id = str(user_id)  # sessions store the id as text; one key type for every caller
        cached, current = _lookup(user_id, now)  # the counters are read before the database
        if cached is not None:
            return copy.copy(cached)  # a private copy: callers may change their user object
        user = super().get_user(user_id)
        if user is None or current is None:
            _users.pop(user_id, None)
            return user
        _users[user_id] = (now + ttl, copy.copy(user), current)
        if len(_users) > MAX_ENTRIES:
            _users.popitem(last=False)
        return user


@receiver([post_save, post_delete], sender=User)
def _forget(sender: type[User], instance: User, **kwargs: Any) -> None:
    """This process at once; auth_epoch tells the others after the commit."""
    _users.pop(str(instance.pk), None)
