"""The device authorization grant's two doors: the device's request (RFC 8628 §3.1) and the person's page, /device.

Thin: decisions are in device.py. The device's endpoint is the toolkit's (oauthlib checks the client and the
scopes); ours then refuses products other than the mail clients' and keeps the grant with our lifetime and
user code. The page is a signed-in page with CSRF like every form here: a code first (from the device's
screen, or already in the address when the device showed a QR code), then the client's name and what it asks,
with the code shown again so the person can compare it with the device's (§5.4: a code sent by someone else
would otherwise let them in), then Allow or Refuse. A product that requires a multi-factor sign-in (or ops'
policy for the user) sends a password-only session through its second factor first, as authorization does.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods
from oauth2_provider import views as toolkit
from oauth2_provider.models import Application
from oauth2_provider.scopes import get_scopes_backend

from loginsvc import conf
from loginsvc.accounts import throttle
from loginsvc.accounts.authentication import counted
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.models import normalise_email
from loginsvc.accounts.views import oauth_no_store
from loginsvc.sso import acr, audit, central, device
from loginsvc.sso.views import malformed_form, step_up

NOT_WAITING = "That code is not waiting for an answer: check it on your device, or start again there."
LOCKED = "Too many wrong codes. Try again later."


@method_decorator(csrf_exempt, name="dispatch")
class DeviceAuthorizationView(toolkit.DeviceAuthorizationView):
    """POST /oidc/device-authorization/ (form: client_id, scope): 200 RFC 8628 §3.2's JSON, or §5.2's error JSON.
    Every answer is no-store: the device code is the device's secret until it is spent."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        client_id = request.POST.get("client_id", "")
        # Parameters in the body only (oauthlib would also read the query string), each once, as at the token endpoint.
        malformed = ("invalid_request", "parameters go in the body") if request.GET else malformed_form(request)
        if malformed is not None:
            return _refused(request, client_id, 400, *malformed)
        wait = throttle.device_request(client_ip(request))
        if wait:
            return _refused(request, client_id, 429, "slow_down", "too many device authorizations from this network",
                            retry_after=wait)
        headers, body, status = self.create_device_authorization_response(request)
        if status != 200:
            answer = json.loads(body)
            audit.refused(request, "device_authorization", answer.get("error", ""), client_id=client_id)
            return oauth_no_store(JsonResponse(answer, status=status, headers=headers))
        if not device.may_use(client_id):
            return _refused(request, client_id, 400, "unauthorized_client",
                            "this client may not use the device authorization grant")
        grant = device.create(client_id, body["device_code"], body["user_code"], body.get("scope", ""))
        body.update(user_code=device.display(grant.user_code), expires_in=conf.get("DEVICE_CODE_SECONDS"),
                    verification_uri_complete=body["verification_uri"] + "?" + urlencode({"user_code": grant.user_code}))
        return oauth_no_store(JsonResponse(body))


def _refused(request: HttpRequest, client_id: str, status: int, error: str, description: str,
             retry_after: int = 0) -> HttpResponse:
    audit.refused(request, "device_authorization", error, client_id=client_id)
    response = oauth_no_store(JsonResponse({"error": error, "error_description": description}, status=status))
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


@never_cache
@csrf_protect
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def device_view(request: HttpRequest) -> HttpResponse:
    """GET (?user_code= from a QR code): the code form. POST `user_code` and `action`: "check" shows the client
    and the code to confirm; "allow" or "refuse" decides. Wrong codes count like wrong passwords (429)."""
    typed = request.POST.get("user_code") if request.method == "POST" else request.GET.get("user_code")
    context: dict[str, Any] = {"user_code": (typed or "")[:32]}

    def refused(error: str, status: int) -> HttpResponse:
        return render(request, "sso/device.html", dict(context, error=error), status=status)

    if request.method != "POST":
        return render(request, "sso/device.html", context)
    attempt, locked = counted(request, normalise_email(request.user.email), "device", known=True)
    if locked is not None:
        response = refused(LOCKED, 429)
        response["Retry-After"] = str(locked.retry_after)
        return response
    code = device.normalise(typed or "")
    grant = device.waiting(code) if code else None
    # Not waiting: unknown, decided, expired, or its product removed while it waited.
    application = Application.objects.filter(client_id=grant.client_id).first() if grant else None
    if grant is None or application is None:
        return refused(NOT_WAITING, 400)
    throttle.was_right(attempt)
    if acr.needed({"client_id": grant.client_id}, request.user) > central.acr_of(central.amr(request)):
        # The product requires a multi-factor sign-in (require_mfa), or ops' policy does of this user.
        return step_up(request, f"{reverse('device')}?{urlencode({'user_code': device.display(grant.user_code)})}")
    action = request.POST.get("action")
    if action in ("allow", "refuse"):
        if not device.decide(request, grant, application, allow=action == "allow"):
            return refused(NOT_WAITING, 409)
        audit.device_decided(request, grant.client_id, allowed=action == "allow")
        return render(request, "sso/device.html", {"decided": action})
    scopes = get_scopes_backend().get_all_scopes()
    return render(request, "sso/device.html", {
        "grant": grant, "application": application, "code": device.display(grant.user_code),
        "scopes_descriptions": [scopes.get(s, s) for s in grant.scope.split()]})
