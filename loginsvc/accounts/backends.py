"""Authentication backend: Django's ModelBackend plus a short per-process cache of session users.

Every request of a logged-in browser asks "who is user N?". Answering from the database costs
more than the whole rest of GET /api/session, so each process keeps users for
USER_CACHE_SECONDS (default 5 s; 0 turns it off). A save or delete on this process drops the
entry at once; on other nodes a deactivation or password change takes effect within that time.
Sessions themselves are never cached here: logout is immediate everywhere.
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
from loginsvc.accounts.models import User

MAX_ENTRIES = 10_000
_users: OrderedDict[str, tuple[float, User]] = OrderedDict()


def cached_user(user_id: str, now: float | None = None) -> User | None:
    """The user this process may still reuse for `user_id` (text), or None; never queries.

    The cache only ever holds users ModelBackend.get_user returned, so only active ones. The
    object is the cache's own: read it, do not change it (get_user hands out copies).
    """
    if conf.get("USER_CACHE_SECONDS") <= 0:
        return None
    entry = _users.get(user_id)
    if entry is not None and entry[0] > (time.monotonic() if now is None else now):
        return entry[1]
    return None


class CachedModelBackend(ModelBackend):
    def get_user(self, user_id: Any) -> User | None:
        ttl = conf.get("USER_CACHE_SECONDS")
        if ttl <= 0:
            return super().get_user(user_id)
        now = time.monotonic()
        user_id = str(user_id)  # sessions store the id as text; one key type for every caller
        cached = cached_user(user_id, now)
        if cached is not None:
            return copy.copy(cached)  # a private copy: callers may change their user object
        user = super().get_user(user_id)
        if user is None:
            _users.pop(user_id, None)
            return None
        _users[user_id] = (now + ttl, copy.copy(user))
        if len(_users) > MAX_ENTRIES:
            _users.popitem(last=False)
        return user


@receiver([post_save, post_delete], sender=User)
def _forget(sender: type[User], instance: User, **kwargs: Any) -> None:
    _users.pop(str(instance.pk), None)
