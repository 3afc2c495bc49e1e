"""The device authorization grant (RFC 8628) for mail clients without a browser: user codes, the decision at /device, polls.

A mail client on a device where no browser can run shows a short user code and the address /device; its owner
types the code there on any signed-in browser, sees which client asks for what, and allows or refuses it. The
client polls the token endpoint meanwhile. Allowing makes a SignIn of the browser's central session (as an
authorization code does), so the tokens the device gets are that session's: its sid, auth_time and amr, listed on
the sessions page, ended with it. The toolkit keeps the grant's row (DeviceGrant); the decisions are ours:

- A user code is 8 letters of RFC 8628 §6.1's consonants (no vowels, so no words; no 0/O or 1/I), shown as
  BCDF-GHJK and accepted with or without the dash, in any case: 20^8 ≈ 2^34.6 codes, never two waiting at once.
  A wrong code counts like a wrong password for the signed-in account and its address (§5.1), a code lives
  DEVICE_CODE_SECONDS, and one network starts at most DEVICE_IP_REQUESTS device authorizations an hour.
- A decision is one conditional UPDATE of a grant still waiting: of two browsers entering the same code, one
  decides; the other is told the code is no longer waiting.
- A poll sooner than `interval` after the last one is told slow_down (§3.5); a poll of an allowed grant is
  answered at once. The device code is spent with the tokens' transaction (validators.py), so two polls racing on
  two nodes get one pair of tokens, and the loser invalid_grant.
- Only the mail clients' products (LOGINSVC_MAIL_CLIENTS) may use the grant: other products have browsers.
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from oauth2_provider.models import Application, DeviceGrant
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request

from loginsvc import conf
from loginsvc.sso import central, token_rules
from loginsvc.sso.introspection import checksum
from loginsvc.sso.models import SignIn

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
POLL_SLACK_SECONDS = 1
ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"   # RFC 8628 §6.1's example set
LENGTH = 8

# The answers of validate_device_code (oauthlib's DeviceCodeGrant.DEVICE_CODE_*): RFC 8628 §3.5's codes.
AUTHORIZED, PENDING, SLOW_DOWN, EXPIRED, DENIED = (
    "authorized", "authorization_pending", "slow_down", "expired_token", "access_denied")


def user_code() -> str:
    """A new user code (the toolkit's OAUTH_DEVICE_USER_CODE_GENERATOR): stored without its dash."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def display(code: str) -> str:
    """How a person reads a user code: two groups of four."""
    return f"{code[:4]}-{code[4:]}"


def normalise(text: str) -> str | None:
    """The user code a person typed (any case, with or without dash or spaces), or None when it cannot be one."""
    code = "".join(text.split()).replace("-", "").upper()
    return code if len(code) == LENGTH and all(c in ALPHABET for c in code) else None


def may_use(client_id: str) -> bool:
    return client_id in conf.get("MAIL_CLIENTS")


def _waiting(code: str) -> Any:
    return DeviceGrant.objects.filter(user_code=code, status=DeviceGrant.AUTHORIZATION_PENDING,
                                      expires__gt=timezone.now())


def waiting(code: str) -> DeviceGrant | None:
    """The grant waiting for `code` (normalised), or None: unknown, decided, or expired. Two grants waiting
    with one code (create avoids it, but two nodes could make the same one at once) are neither: the
    person cannot tell which device they would allow."""
    found = list(_waiting(code)[:2])
    return found[0] if len(found) == 1 else None


def create(client_id: str, device_code: str, code: str, scope: str) -> DeviceGrant:
    """The grant of a new device authorization, waiting DEVICE_CODE_SECONDS, under `code` or, when a grant
    waits under that one already, a new one (the grant's user_code says which). Its first poll is never
    told slow_down, however soon it comes: only a poll after a poll is paced."""
    while _waiting(code).exists():
        code = user_code()
    now = timezone.now()
    grant = DeviceGrant.objects.create(client_id=client_id, device_code=device_code, user_code=code, scope=scope,
                                       expires=now + timedelta(seconds=conf.get("DEVICE_CODE_SECONDS")))
    DeviceGrant.objects.filter(pk=grant.pk).update(
        last_checked=now - timedelta(seconds=oauth2_settings.DEVICE_FLOW_INTERVAL))  # auto_now set it to now
    return grant


def decide(request: HttpRequest, grant: DeviceGrant, application: Application, allow: bool) -> bool:
    """Allow or refuse the waiting `grant` of `application` for the signed-in user of `request`; False when it is
    no longer waiting (decided meanwhile, maybe on another node, or expired). Allowed, it gets this session's
    SignIn."""
    status = DeviceGrant.AUTHORIZED if allow else DeviceGrant.DENIED
    with transaction.atomic():
        decided = DeviceGrant.objects.filter(pk=grant.pk, status=DeviceGrant.AUTHORIZATION_PENDING, user=None,
                                             expires__gt=timezone.now()).update(status=status, user=request.user)
        if decided and allow:
            SignIn.objects.create(sid=central.sid(request), user=request.user, application=application,
                                  auth_time=central.auth_time(request), amr=" ".join(central.amr(request)),
                                  code_hash=checksum(grant.device_code),
                                  offline=token_rules.OFFLINE_ACCESS in grant.scope.split())
    return bool(decided)


def poll(client: Any, device_code: str, request: Request) -> str | None:
    """RFC 8628 §3.5: where the device's grant stands (one of the statuses above), or None for a device code that
    is not this client's (invalid_grant). Allowed: the request is given the user, the scopes and the SignIn that
    the tokens will carry. Waiting: slow_down when polled sooner than the interval after the last poll."""
    grant = DeviceGrant.objects.filter(device_code=device_code, client_id=client.client_id).first()
    if grant is None:
        return None
    now = timezone.now()
    if grant.status == DeviceGrant.EXPIRED or grant.expires <= now:
        return EXPIRED
    if grant.status == DeviceGrant.DENIED:
        return DENIED
    if grant.status == DeviceGrant.AUTHORIZED:
        sign_in = SignIn.objects.filter(code_hash=checksum(device_code), application=client, token_family=None).first()
        if sign_in is None or grant.user is None or not grant.user.is_active:
            return None   # the session that allowed it has ended, or the account may no longer sign in
        request.user, request.scopes, request.sign_in = grant.user, grant.scope.split(), sign_in
        return AUTHORIZED
    # A second of slack: a client that waits the interval is not told slow_down for its timer's jitter.
    too_soon = grant.last_checked > now - timedelta(seconds=oauth2_settings.DEVICE_FLOW_INTERVAL - POLL_SLACK_SECONDS)
    DeviceGrant.objects.filter(pk=grant.pk).update(last_checked=now)
    return SLOW_DOWN if too_soon else PENDING


def spend(request: Request) -> bool:
    """Delete the allowed grant of this token request in the tokens' transaction; False when another poll spent it."""
    return bool(DeviceGrant.objects.filter(device_code=request.device_code, client_id=request.client.client_id,
                                           status=DeviceGrant.AUTHORIZED).delete()[0])


def tidy() -> int:
    """Delete grants whose life ended a while ago, decided or not (a late poll until then hears expired_token;
    the SignIn of an allowed grant never collected goes with housekeeping's unredeemed sign-ins); how many."""
    cutoff = timezone.now() - timedelta(seconds=conf.get("DEVICE_CODE_SECONDS"))
    return DeviceGrant.objects.filter(expires__lt=cutoff).delete()[0]
