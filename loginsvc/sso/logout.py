"""Ending a central session for single sign-on: revoke the tokens it issued, tell every product it signed in to.

Hooked to Django's user_logged_out signal, so every way a session ends through auth.logout —
the central /logout/ page, RP-initiated logout, the absolute lifetime — does the same; and to
accounts' sign_ins.all_ended, which ends all of a user's sign-ins at once (sign out everywhere,
deactivation, a new password, deletion) and also revokes every other token of the user. The deliveries are
rows of the outbox (models.LogoutDelivery) written in the same transaction as the revocation,
then handed to backchannel.py, which retries them until each product confirms.
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone
from oauth2_provider.models import AccessToken, Grant, IDToken, RefreshToken

from loginsvc.accounts import sign_ins
from loginsvc.accounts.client_ip import client_ip
from loginsvc.sso import audit, backchannel, central
from loginsvc.sso.models import LogoutDelivery, Product, SignIn


def end_sign_ins(user: Any, sid: str, ip: str | None = None, by: str = "logout") -> int:
    """Revoke every token that session `sid` of `user` (a user or its id) issued and queue one logout
    per product.

    Returns how many back-channel logouts were queued."""
    return end_sign_ins_at(user, sid, None, ip=ip, by=by)


def end_sign_ins_at(user: Any, sid: str, application: Any, ip: str | None = None, by: str = "logout") -> int:
    """end_sign_ins, limited to the sign-in of one product (`application`; None: every product).

    RP-initiated logout ends only the hinting product's sign-in when whoever asks is not that
    session's user: an ID token is a bearer value that products, logs and browsers see, so
    holding one must not sign its user out of the other products (sso/rp_logout.py)."""
    user_id = getattr(user, "pk", user)
    with transaction.atomic():
        # Locked (PostgreSQL; SQLite's IMMEDIATE transactions serialise anyway): two logouts of one
        # session at once (RP logout on one node, logout everywhere on another) queue its logouts once.
        rows = SignIn.objects.select_for_update().filter(sid=sid, user_id=user_id)
        ending = list(rows if application is None else rows.filter(application=application))
        if not ending:
            return 0
        families = [s.token_family for s in ending if s.token_family]
        access = AccessToken.objects.filter(refresh_token__token_family__in=families)
        IDToken.objects.filter(pk__in=access.exclude(id_token=None).values("id_token")).delete()
        for family in families:
            RefreshToken.revoke_family(family)
        applications = {s.application_id for s in ending}
        products = Product.objects.filter(application_id__in=applications).exclude(backchannel_logout_uri="")
        queued = [LogoutDelivery(application_id=p.application_id, uri=p.backchannel_logout_uri,
                                 sub=str(user_id), sid=sid) for p in products]
        LogoutDelivery.objects.bulk_create(queued)
        SignIn.objects.filter(pk__in=[s.pk for s in ending]).delete()
        transaction.on_commit(backchannel.kick)
    audit.logged_out(user_id, len(queued), by, ip)
    return len(queued)


@receiver(user_logged_out)
def _session_ended(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    sid = central.current_sid(request) if request is not None and hasattr(request, "session") else None
    if user is not None and sid:
        end_sign_ins(user, sid, ip=client_ip(request))


def revoke_tokens_of(user_id: Any) -> None:
    """Every token of the user, whichever sign-in (if any) it belongs to."""
    RefreshToken.objects.filter(user_id=user_id, revoked=None).update(revoked=timezone.now())
    AccessToken.objects.filter(user_id=user_id).delete()
    IDToken.objects.filter(user_id=user_id).delete()


@receiver(sign_ins.all_ended)
def _all_ended(sender: Any, user_id: Any, by: str, ip: str | None = None, **kwargs: Any) -> None:
    """All of a user's sign-ins end (accounts/sign_ins.py): every session's products are told, and no
    token of the user survives, in the caller's transaction."""
    with transaction.atomic():
        # Pending codes first: a redemption deletes its grant, then updates its sign-in, so taking the
        # rows in the same order here never deadlocks with one (PostgreSQL).
        Grant.objects.filter(user_id=user_id).delete()
        for sid in set(SignIn.objects.filter(user_id=user_id).values_list("sid", flat=True)):
            end_sign_ins(user_id, sid, ip=ip, by=f"everywhere:{by}")
        revoke_tokens_of(user_id)
