"""Ops' policy: who must have a second factor (LOGINSVC_MFA_REQUIRED), after a grace period to set one up.

`none` (the default), `staff` (accounts with is_staff) or `all`. A covered user without a factor is
told at sign-in and has LOGINSVC_MFA_GRACE_SECONDS (7 days) from that first notice; until then the
password alone still signs in everywhere. Afterwards the authorization endpoint needs level "2" for
them (sso/acr.py), exactly as for a product with require_mfa: no product gets a code for them until
they have set a factor up (they are led to the account page) and used it. The central service's own
pages stay open to them, so that they can set the factor up.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from loginsvc import conf
from loginsvc.mfa import factors
from loginsvc.mfa.models import EnrolmentDue


def covers(user: object) -> bool:
    policy = conf.get("MFA_REQUIRED")
    return policy == "all" or (policy == "staff" and bool(getattr(user, "is_staff", False)))


def due(user: object) -> datetime | None:
    """When `user` must have a second factor, or None (not covered, or has one). The first call for a
    covered user without a factor starts the grace period."""
    if not covers(user) or factors.methods_of(user):
        return None
    grace = timedelta(seconds=conf.get("MFA_GRACE_SECONDS"))
    row, _ = EnrolmentDue.objects.get_or_create(user_id=getattr(user, "pk"), defaults={"due": timezone.now() + grace})
    return row.due


def requires_second_factor(user: object) -> bool:
    """Products need a multi-factor sign-in from `user`: covered, and either has a factor (a session
    signed in before it was set up is asked for it) or the grace period is over."""
    if not covers(user):
        return False
    if factors.methods_of(user):
        return True
    when = due(user)
    return when is not None and when <= timezone.now()
