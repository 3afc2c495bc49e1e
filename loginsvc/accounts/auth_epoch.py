"""Per-user auth epochs: "sign out everywhere", and user changes seen by every node on the next request.

Two parts, each doing what it is good at:

- The database is the authority. `User.auth_epoch` is mixed into the session-auth hash
  (models.User), so raising it (sign_out_everywhere) makes every session of that user fail
  Django's own session check, on every node, whatever their caches hold.
- Redis tells processes when their per-process user cache (backends.py) is stale. Every change of
  a user that matters to authentication (a save other than last_login, a delete) INCRs
  `loginsvc:auth-gen:<id>` after the commit; any QuerySet.update() of users INCRs
  `loginsvc:auth-gen:*`. A cached user is reused only while both counters still read what they
  read before the user was loaded: one MGET on the /api/session hot path, instead of a query.

Redis down: no cache entry can be validated, so every request reads its user from the database.
Nobody is logged out and a revoked session is refused at once; it costs a query per request
until Redis answers (after a failure a process skips Redis for REDIS_BACKOFF_SECONDS and drops its
cache). Residual window: a change whose INCR could not reach Redis, seen by a process that had
the user cached and met no Redis error meanwhile, lasts at most LOGINSVC_USER_CACHE_SECONDS.
Changes made with raw SQL are not seen before that either.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_redis import get_redis_connection

from loginsvc.accounts import sign_ins

if TYPE_CHECKING:
    from loginsvc.accounts.models import User

logger = logging.getLogger(__name__)

KEY_PREFIX = "loginsvc:auth-gen:"
ALL_KEY = KEY_PREFIX + "*"
# Longer than any cache entry lives, so a counter never vanishes under an entry that read it
# missing before an INCR (the one case where a missing key would look unchanged).
KEY_TTL_SECONDS = 86400
REDIS_BACKOFF_SECONDS = 1.0
Stamp = tuple[Any, Any]

# The connection pool that failed last, and until when it is not asked again.
_backoff: tuple[object, float] = (None, 0.0)


def _redis() -> Any:
    """The Redis client, or None while its pool is backing off after a failure."""
    client = get_redis_connection("default")
    pool, until = _backoff
    if pool is client.connection_pool and time.monotonic() < until:
        return None
    return client


def _redis_error(client: Any, what: str) -> None:
    global _backoff
    _backoff = (client.connection_pool, time.monotonic() + REDIS_BACKOFF_SECONDS)
    logger.warning("auth epoch: Redis unreachable while %s; users are read from the database", what)


def keys(user_id: str) -> tuple[str, str]:
    """The Redis keys whose values a cached user `user_id` must still match, in Stamp order."""
    return KEY_PREFIX + user_id, ALL_KEY


def stamp(user_id: str) -> Stamp | None:
    """The counters that a cached user `user_id` must still match, or None when Redis cannot say
    (then nothing may be cached or reused)."""
    client = _redis()
    if client is None:
        return None
    try:
        values = client.mget(keys(user_id))
    except Exception:  # noqa: BLE001 - any Redis failure means "cannot validate": use the database
        _redis_error(client, "checking a cached user")
        return None
    return values[0], values[1]


def _incr(key: str) -> bool:
    client = get_redis_connection("default")  # always tried: the news matters more than a wait
    try:
        client.pipeline(transaction=False).incr(key).expire(key, KEY_TTL_SECONDS).execute()
    except Exception:  # noqa: BLE001 - the database change stands; caches expire on their own
        _redis_error(client, "publishing a user change")
        return False
    return True


def publish(user_id: object) -> bool:
    """Tell every process that user `user_id` changed; False if Redis could not be told."""
    return _incr(KEY_PREFIX + str(user_id))


def publish_all() -> bool:
    """Tell every process that any user may have changed (a bulk update)."""
    return _incr(ALL_KEY)


def on_commit_publish(user_id: object | None) -> None:
    """Publish once the current transaction commits: before it, another process would reload the
    old row and cache it under the new counter. None: any user may have changed."""
    transaction.on_commit(lambda: publish(user_id) if user_id is not None else publish_all())


@receiver([post_save, post_delete], sender="accounts.User")
def _user_changed(sender: type[User], instance: User, **kwargs: Any) -> None:
    """Connected with models (which import this module), so every process that writes users
    publishes: a node, `manage.py logout_user`, a shell."""
    on_commit_publish(instance.pk)


def sign_out_everywhere(user: User, by: str, ip: str | None = None) -> None:
    """End every session of `user` on every node at once (ASVS 3.3.4): a new epoch in the database;
    backends' post_save receiver drops this process's copy and, after the commit, tells the others;
    every sign-in the user has at products ends too (sign_ins.end_all)."""
    with transaction.atomic():
        user.auth_epoch = F("auth_epoch") + 1  # in the database: two sign-outs at once both count
        user.save(update_fields=["auth_epoch"])
        user.refresh_from_db(fields=["auth_epoch"])
        sign_ins.end_all(type(user), user.pk, by=by, ip=ip)  # single sign-on's tokens and products too
    # An audit line like accounts/audit.py's: who and from where, never the email or a session id.
    logger.info("logout: every session", extra={"user_id": user.pk, "by": by, "client_ip": ip})
