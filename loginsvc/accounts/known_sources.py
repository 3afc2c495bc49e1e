"""Devices and networks an account has signed in from, which the account-wide lock lets through.

The account-wide brute-force counter (throttle.py) must not let an attacker lock the real user
out, so its lock applies only to sources the account does not know (the "device cookie" design
of OWASP's "Slow Down Online Guessing Attacks with Device Cookies"). A source is known when
- the browser presents a device cookie naming the account, and the account still lists that
  device (KnownDevice; the user can remove it on the sessions page): signed (django.core.signing,
  keyed from SECRET_KEY), set at each successful sign-in, valid KNOWN_SOURCE_SECONDS; it survives a
  changing address (mobile, DHCP). It holds, for up to MAX_DEVICE_ACCOUNTS accounts, a keyed tag
  of the account and a random device id, never an email or user id. The device's row is read when
  the account-wide lock has refused an attempt (authentication._begin), i.e. under attack, and at a
  sign-in from a new network (whether to send the new-sign-in notice); or
- the client network has signed in to the account successfully within KNOWN_SOURCE_SECONDS
  (KnownNetwork rows): IPv4 per exact address, IPv6 per /64 — the same units the lockout
  counters use (throttle.client_network). Not per IPv4 /24: a /24 is often shared by unrelated
  customers of one hosting or mobile provider, so an attacker could rent an address "known"
  to the victim; the device cookie covers the user whose address changes.
"""
from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from loginsvc import conf
from loginsvc.accounts.audit import account_tag
from loginsvc.accounts.models import KnownDevice, KnownNetwork, User
from loginsvc.accounts.throttle import client_network

DEVICE_SALT = "loginsvc.accounts.known_sources.device"
TAG_PURPOSE = "loginsvc.accounts.known_sources.account"
MAX_DEVICE_ACCOUNTS = 5
MAX_KNOWN_NETWORKS = 20
MAX_KNOWN_DEVICES = 20
MAX_USER_AGENT = 300
LEGACY = ""  # the device id of a cookie entry written before devices had ids


def device_cookie_name() -> str:
    """`loginsvc_device`, `__Host-loginsvc_device` in production (settings.py says why)."""
    return settings.LOGINSVC_DEVICE_COOKIE_NAME


def _device_entries(request: HttpRequest) -> list[tuple[str, str]]:
    """The cookie's (account tag, device id) pairs; none when it is missing, forged or expired."""
    raw = request.COOKIES.get(device_cookie_name())
    if not raw:
        return []
    try:
        entries = signing.loads(raw, salt=DEVICE_SALT, max_age=conf.get("KNOWN_SOURCE_SECONDS"))
    except signing.BadSignature:  # also expired (SignatureExpired) or malformed
        return []
    if not isinstance(entries, list):
        return []
    # A bare tag is a cookie set before devices had ids (LEGACY): known until its next sign-in gives it one.
    pairs = [(e, LEGACY) if isinstance(e, str) else tuple(e) for e in entries
             if isinstance(e, str) or (isinstance(e, list) and len(e) == 2 and all(isinstance(v, str) for v in e))]
    return pairs[:MAX_DEVICE_ACCOUNTS]  # type: ignore[return-value]


def device_id(request: HttpRequest, email: str) -> str | None:
    """The device id this browser's cookie holds for the account, if any (no database query)."""
    tag = account_tag(email, TAG_PURPOSE)
    for known_tag, device in _device_entries(request):
        if constant_time_compare(tag, known_tag):
            return device
    return None


def device_knows(request: HttpRequest, email: str) -> bool:
    """Does this browser carry a valid device cookie for the account, of a device the account still
    lists? One indexed query when the cookie names the account."""
    device = device_id(request, email)
    if device == LEGACY:
        return True  # a cookie from before device ids, within its validity: not listed, so not removable
    return device is not None and KnownDevice.objects.filter(user__email=email, device_id=device).exists()


def network_knows(email: str, ip: str) -> bool:
    """Has the account signed in from this client network recently? One indexed query."""
    since = timezone.now() - timedelta(seconds=conf.get("KNOWN_SOURCE_SECONDS"))
    return KnownNetwork.objects.filter(user__email=email, network=client_network(ip), last_seen__gte=since).exists()


def remember_network(user: User, ip: str) -> bool:
    """Record a successful sign-in from this network; keep the user's newest MAX_KNOWN_NETWORKS.
    Whether the network was new to the account."""
    now, network = timezone.now(), client_network(ip)
    if KnownNetwork.objects.filter(user=user, network=network).update(last_seen=now):
        return False  # the usual case: one query
    try:
        with transaction.atomic():
            KnownNetwork.objects.create(user=user, network=network, last_seen=now)
    except IntegrityError:  # a parallel sign-in from the same network created it
        return False
    since = now - timedelta(seconds=conf.get("KNOWN_SOURCE_SECONDS"))
    keep = list(KnownNetwork.objects.filter(user=user).order_by("-last_seen")
                .values_list("pk", flat=True)[:MAX_KNOWN_NETWORKS])
    KnownNetwork.objects.filter(user=user).filter(Q(last_seen__lt=since) | ~Q(pk__in=keep)).delete()
    return True


def remember_device(request: HttpRequest, response: HttpResponse, user: User) -> None:
    """Set (or refresh) the device cookie with this account's entry first, and list the device for the
    account (one INSERT that does nothing when it is listed; a device the user removed and then
    signed in from again is listed again)."""
    tag = account_tag(user.email, TAG_PURPOSE)
    listed = device_id(request, user.email) or None  # a legacy entry gets an id now
    device = listed or secrets.token_urlsafe(12)
    KnownDevice.objects.bulk_create([KnownDevice(
        user=user, device_id=device, created=timezone.now(),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:MAX_USER_AGENT])], ignore_conflicts=True)
    entries = [[tag, device]] + [[t, d] for t, d in _device_entries(request) if not constant_time_compare(t, tag)]
    response.set_cookie(
        device_cookie_name(), signing.dumps(entries[:MAX_DEVICE_ACCOUNTS], salt=DEVICE_SALT),
        max_age=conf.get("KNOWN_SOURCE_SECONDS"), httponly=True, samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE, path="/",
    )
    if listed is None and KnownDevice.objects.filter(user=user).count() > MAX_KNOWN_DEVICES:  # a new browser
        keep = KnownDevice.objects.filter(user=user).order_by("-created").values_list("pk", flat=True)[:MAX_KNOWN_DEVICES]
        KnownDevice.objects.filter(user=user).exclude(pk__in=list(keep)).delete()
