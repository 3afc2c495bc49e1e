"""Passkey endpoints: the JSON the page's script (scripts/passkeys.js) exchanges, and removal on the account page.

A ceremony is `POST /api/passkey/options` (its purpose: "register", "sign-in" or "second-step";
registering also takes "password" unless the session signed in within the last 5 minutes)
and then the browser's answer: `POST /api/passkey/register`, `POST /api/passkey/sign-in`, or
`POST /api/login/mfa` with method "webauthn" (accounts/views.py). Each is CSRF-checked like
`/api/login`. Starting ceremonies is limited per client network (`PASSKEY_OPTIONS_IP_REQUESTS` a minute:
each leaves a challenge row). A refused answer is a 4xx that says which check failed (never a 500), and signs in
nobody; the decisions are in passkeys.py (checks) and accounts/authentication.py (throttle, sign-in).
"""
from __future__ import annotations

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_POST

from loginsvc.accounts import throttle
from loginsvc.accounts import views as account_views
from loginsvc.accounts.authentication import Outcome, attempt_passkey, confirm_password
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.views import json_body, json_error, locked_response, too_many
from loginsvc.mail import notices
from loginsvc.mfa import audit, ceremonies, factors, passkeys, pending
from loginsvc.mfa.views import password_refused

MAX_BODY = 64 * 1024  # an attestation with a certificate chain is a few KB; more is not a passkey
SCRIPT = (Path(__file__).parent / "scripts" / "passkeys.js").read_bytes()


@never_cache
@csrf_protect
def options_view(request: HttpRequest) -> HttpResponse:
    """Start a ceremony in this browser: {"purpose": "register"|"sign-in"|"second-step"} → the options
    for navigator.credentials.create() or .get(), as PublicKeyCredential*Options JSON."""
    payload = json_body(request)
    if isinstance(payload, JsonResponse):
        return payload
    wait = throttle.passkey_options_request(client_ip(request))
    if wait:
        return too_many(wait, "too many passkey ceremonies from this network",
                        detail="Too many passkey attempts from this network. Please wait and try again.")
    purpose = payload.get("purpose")
    if purpose == ceremonies.REGISTER:
        if not request.user.is_authenticated:
            return json_error(401, "sign in first")
        refused = _reauthenticated(request, payload.get("password"))
        if refused is not None:
            return refused
        challenge = ceremonies.begin(request, purpose, request.user.pk)
        return _options(passkeys.registration_options(request.user, challenge))
    if purpose == ceremonies.SECOND_STEP:
        waiting = pending.current(request)
        if waiting is None or not factors.has_passkey(waiting.user):
            return json_error(401, "no sign-in is waiting for a passkey in this browser; sign in again")
        challenge = ceremonies.begin(request, purpose, waiting.user.pk)
        return _options(passkeys.authentication_options(challenge, waiting.user))
    if purpose == ceremonies.SIGN_IN:
        return _options(passkeys.authentication_options(ceremonies.begin(request, purpose)))
    return json_error(400, "purpose must be one of: register, sign-in, second-step")


def _reauthenticated(request: HttpRequest, password: object) -> HttpResponse | None:
    """None when the user may add a passkey now, else the answer: 401 asking for the password, or
    the password refused (counted like a login; 429 with Retry-After when locked)."""
    if not passkeys.password_due(request.session):
        return None
    if not isinstance(password, str) or not password:
        return json_error(401, "password required", detail="Type your password to add a passkey.")
    result = confirm_password(request, request.user, password, "api")
    if result.outcome is Outcome.LOCKED:
        return locked_response(result)
    if result.outcome is not Outcome.SUCCESS:
        return json_error(401, "password required", detail="That password is not correct.")
    return None


def _options(options_json: str) -> HttpResponse:
    return HttpResponse(options_json, content_type="application/json")


def _credential(payload: dict) -> dict | None:
    credential = payload.get("credential")
    return credential if isinstance(credential, dict) else None


@never_cache
@csrf_protect
def register_view(request: HttpRequest) -> HttpResponse:
    """The signed-in user's new passkey: {"credential": <the browser's answer>, "name": "…"} → 201
    {"id", "name"}, plus "recovery_codes" (shown once) when it is the account's first factor."""
    if not request.user.is_authenticated:
        return json_error(401, "sign in first")
    payload = json_body(request, MAX_BODY)
    if isinstance(payload, JsonResponse):
        return payload
    credential = _credential(payload)
    if credential is None:
        return json_error(400, "credential must be the browser's answer, a JSON object")
    ceremony = ceremonies.take(request, ceremonies.REGISTER, credential)
    if ceremony is None:
        return json_error(400, "no passkey registration is waiting in this browser (it expired or was used); start again")
    first = not factors.has_factor(request.user)
    try:
        with transaction.atomic():
            passkey = passkeys.register(request.user, ceremony, credential, payload.get("name") or "")
            notices.account_changed(request.user, client_ip(request), "passkey added")
    except passkeys.Refused as exc:
        audit.changed(request.user.pk, client_ip(request), "passkey refused at registration")
        return json_error(400, str(exc))
    audit.changed(request.user.pk, client_ip(request), "passkey added")
    body: dict[str, object] = {"id": passkey.pk, "name": passkey.name}
    codes = factors.codes_for_new_factor(request.user, first, client_ip(request))
    if codes is not None:
        body["recovery_codes"] = codes
    return JsonResponse(body, status=201)


@never_cache
@csrf_protect
def sign_in_view(request: HttpRequest) -> HttpResponse:
    """Sign in with a passkey and no name: {"credential": <the answer>, "next": "…"} → 200 as
    /api/login, with "redirect" for the page; 401 {"error", "detail"} when refused; 429 when locked."""
    payload = json_body(request)
    if isinstance(payload, JsonResponse):
        return payload
    credential = _credential(payload)
    if credential is None:
        return json_error(400, "credential must be the passkey's answer, a JSON object")
    result = attempt_passkey(request, credential, "api")
    if result.outcome is Outcome.LOCKED:
        return locked_response(result)
    if result.outcome is not Outcome.SUCCESS:
        return json_error(401, "passkey not accepted", detail=result.detail)
    return account_views.api_signed_in(request, result, payload)


@never_cache
@csrf_protect
@login_required
@require_POST
def remove_view(request: HttpRequest, passkey_id: int) -> HttpResponse:
    """Remove one of the user's passkeys, password first (counted like a login)."""
    refused = password_refused(request)
    if refused is not None:
        return refused
    with transaction.atomic():
        removed = passkeys.remove(request.user, passkey_id)
        if removed is not None:
            factors.forget_codes_if_alone(request.user)
            notices.account_changed(request.user, client_ip(request), "passkey removed")
    if removed is not None:
        audit.changed(request.user.pk, client_ip(request), "passkey removed")
    return redirect("mfa-account")


@require_GET
def script_view(request: HttpRequest) -> HttpResponse:
    """The pages' only script, from this origin (the CSP allows 'self' and nothing else)."""
    response = HttpResponse(SCRIPT, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    response["X-Content-Type-Options"] = "nosniff"
    return response
