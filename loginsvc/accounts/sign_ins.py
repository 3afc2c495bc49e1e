"""Ending all of a user's sign-ins: the one call every path that ends a user's right to be signed in makes.

The paths (ASVS 3.3.3, 3.3.4; RFC 9700 §4.14.2): the account deactivated, its password changed or
removed, the account deleted (models.User and its QuerySet: save, bulk update, delete), "sign out
everywhere" and `manage.py logout_user` (auth_epoch.sign_out_everywhere). Each path already ends the
user's central sessions on every node by what it changes (an inactive user, a new password hash
or auth epoch fails Django's session check); `end_all` tells the features that keep sign-ins of
their own to end them too: single sign-on revokes every access and refresh token of the user and
queues a back-channel logout to every product it signed in to (sso/logout.py).

Synchronous, in the caller's transaction: the change and the revocation commit together or not at
all, so no crash between the two leaves tokens alive for a disabled account. Later flows (password
reset, account admin, app passwords) call `end_all` or make one of the changes above.
"""
from __future__ import annotations

from typing import Any

from django.dispatch import Signal

# Sent by end_all (sender: the User class; user_id=, by=, ip=): receivers end what they keep.
all_ended = Signal()

# Why the sign-ins ended, as audit lines and logout reasons show it.
DEACTIVATED, PASSWORD, DELETED = "deactivated", "password", "deleted"


def end_all(user_model: type, user_id: Any, by: str, ip: str | None = None) -> None:
    """End every sign-in of user `user_id`, everywhere, because of `by` (who or what ended them)."""
    all_ended.send(sender=user_model, user_id=user_id, by=by, ip=ip)
