"""Sessions and devices: what a person sees of where they are signed in, and how they end it.

A session is listed with its browser and system (ua-parser, read at listing time: the sign-in
path only stores the raw User-Agent), the address and cluster it signed in on, when it started and
was last used, and the products signed in through it. Ending one removes its session from the
store (every node: the cache and the database), revokes its products' tokens and queues their
back-channel logouts (sso/logout.end_sign_ins), and mails nothing: the person did it themselves.

The known devices and networks are the account-wide guessing defence's exemptions
(accounts/known_sources.py); removing one makes that source unknown again. Mail programs are listed
too: app passwords and OAuth sign-ins that stay signed in; signing one out revokes it.
"""
from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest
from oauth2_provider.models import get_application_model

from loginsvc.accounts import known_sources, session_registry
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.models import KnownDevice, KnownNetwork, User
from loginsvc.mailclients import app_passwords
from loginsvc.selfservice import audit
from loginsvc.sso import central, logout
from loginsvc.sso.models import SignIn

ENDED_BY_USER = "session-ended"


@dataclass(frozen=True)
class Described:
    """How a User-Agent reads to a person."""

    browser: str
    system: str


@functools.lru_cache(maxsize=512)
def describe(user_agent: str) -> Described:
    """Browser and system of a User-Agent, e.g. ("Chrome 156", "Linux"); "Unknown" when unparsable."""
    from ua_parser import parse  # its regexes load on first use: only pages that list sessions pay

    result = parse(user_agent).with_defaults() if user_agent else None
    if result is None:
        return Described("Unknown browser", "Unknown system")
    agent, system = result.user_agent, result.os

    def named(family: str, major: str | None) -> str:
        return family if family == "Other" or not major else f"{family} {major}"

    return Described(named(agent.family, agent.major).replace("Other", "Unknown browser"),
                     named(system.family, system.major).replace("Other", "Unknown system"))


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).isoformat()


def _products(sids: list[str], user: User) -> dict[str, list[str]]:
    """The names of the products signed in through each of these sessions."""
    rows = SignIn.objects.filter(user=user, sid__in=sids).values_list("sid", "application_id")
    names = dict(get_application_model().objects.filter(pk__in={a for _, a in rows}).values_list("pk", "name"))
    found: dict[str, list[str]] = {}
    for sid, application in rows:
        found.setdefault(sid, [])
        if names.get(application) not in found[sid]:
            found[sid].append(names.get(application) or "")
    return found


def listing(request: HttpRequest) -> list[dict[str, Any]]:
    """The signed-in user's sessions, this one first, as `GET /api/sessions` answers them."""
    return as_listed(request.user, session_registry.live(request.user), session_registry.current_id(request))


def as_listed(user: User, live: list[session_registry.LiveSession], current: str | None = None) -> list[dict[str, Any]]:
    """Live sessions of `user` as the sessions page, the API and the admin show them (`current` first)."""
    products = _products([s.data[central.SID] for s in live if s.data.get(central.SID)], user)
    answer = []
    for session in live:
        record, described = session.record, describe(session.record.user_agent)
        answer.append({
            "id": record.public_id, "current": record.public_id == current,
            "browser": described.browser, "system": described.system, "address": record.address,
            "first_seen": _iso(record.created.timestamp()),
            "last_seen": _iso(session.last_seen or record.created.timestamp()),
            "cluster": record.cluster, "products": sorted(products.get(session.data.get(central.SID, ""), [])),
        })
    answer.sort(key=lambda s: not s["current"])
    return answer


def end_session(user: User, session: session_registry.LiveSession, ip: str, by: str) -> None:
    """End one live session of `user` and its product sign-ins, in one transaction (the callers audit)."""
    with transaction.atomic():
        sid = session.data.get(central.SID)
        if sid:
            logout.end_sign_ins(user, sid, ip=ip, by=by)
        session_registry.end(session)


def _end(request: HttpRequest, session: session_registry.LiveSession) -> None:
    ip = client_ip(request)
    end_session(request.user, session, ip, ENDED_BY_USER)
    audit.session_ended(request.user.pk, ip)


def end_one(request: HttpRequest, public_id: str) -> bool:
    """End one of the user's other sessions; False when the user has no such live session (or it is
    this one, which /logout/ ends)."""
    if public_id == session_registry.current_id(request):
        return False
    session = session_registry.find(request.user, public_id)
    if session is not None:
        _end(request, session)
    return session is not None


def end_others(request: HttpRequest) -> int:
    """End every session of the user but this one; how many ended."""
    current = session_registry.current_id(request)
    others = [s for s in session_registry.live(request.user) if s.record.public_id != current]
    for session in others:
        _end(request, session)
    return len(others)


def known_sources_of(request: HttpRequest) -> dict[str, list[dict[str, Any]]]:
    """The devices and networks that the account-wide lock lets through, for the sessions page."""
    user = request.user
    this_device = known_sources.device_id(request, user.email)
    devices = [{"id": d.pk, "current": d.device_id == this_device, "first_seen": d.created.isoformat(),
                **describe(d.user_agent).__dict__}
               for d in KnownDevice.objects.filter(user=user).order_by("-created")]
    networks = [{"id": n.pk, "network": n.network, "last_seen": n.last_seen.isoformat()}
                for n in KnownNetwork.objects.filter(user=user).order_by("-last_seen")]
    return {"devices": devices, "networks": networks}


def forget_source(request: HttpRequest, kind: str, pk: object) -> bool:
    """Remove a known device or network of the signed-in user (audited); False when not theirs."""
    model = {"device": KnownDevice, "network": KnownNetwork}.get(kind)
    try:
        number = int(str(pk))
    except ValueError:
        return False
    if model is None or not model.objects.filter(user=request.user, pk=number).delete()[0]:
        return False
    audit.known_source_removed(request.user.pk, client_ip(request), kind)
    return True


def mail_clients_of(user: User) -> list[dict[str, Any]]:
    """Mail programs signed in to the account: app passwords (with their last use and address) and mail
    clients that signed in with OAuth and stay signed in (offline_access; last use: their last refresh)."""
    from oauth2_provider.models import RefreshToken

    listed = [{"id": "app-password:" + p["id"], "kind": "app_password", "name": p["name"], "scope": p["scope"],
               "first_seen": p["created"], "last_seen": p["last_used"], "address": p["last_address"]}
              for p in app_passwords.listing(user)]
    sign_ins = list(SignIn.objects.filter(user=user, offline=True).exclude(token_family=None).select_related("application"))
    last = dict(RefreshToken.objects.filter(token_family__in=[s.token_family for s in sign_ins])
                .values("token_family").annotate(latest=Max("created")).values_list("token_family", "latest"))
    for sign_in in sign_ins:
        latest = last.get(sign_in.token_family)
        listed.append({"id": f"oauth:{sign_in.pk}", "kind": "oauth", "name": sign_in.application.name,
                       "scope": "mail", "first_seen": _iso(sign_in.auth_time),
                       "last_seen": latest.isoformat() if latest else None, "address": None})
    return listed


def end_mail_client(request: HttpRequest, client_id: str) -> bool:
    """Sign one mail program out: revoke its app password, or end its OAuth sign-in (its tokens)."""
    kind, _, key = client_id.partition(":")
    if kind == "app-password":
        return app_passwords.revoke(request, key)
    if kind != "oauth" or not key.isascii() or not key.isdigit():
        return False
    sign_in = SignIn.objects.filter(user=request.user, offline=True, pk=int(key)).first()
    if sign_in is None:
        return False
    logout.end_sign_ins_at(request.user, sign_in.sid, sign_in.application, ip=client_ip(request), by=ENDED_BY_USER)
    audit.session_ended(request.user.pk, client_ip(request), by="user:mail-client")
    return True
