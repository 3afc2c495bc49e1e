"""Pages of second factors: the sign-in's second step, and setting up or removing them on the account page.

Thin: the decisions are in accounts/authentication.py (the steps, throttled) and in totp.py and
recovery.py (the factors). Every change is a CSRF-checked POST by the signed-in user and audited;
removing a factor or making new recovery codes asks for the password again (counted like a
login). Secrets and codes appear only in the one answer that shows them (no-store) and in no log.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from loginsvc.accounts import views as account_views
from loginsvc.accounts.authentication import (
    LoginResult, Outcome, attempt_second_factor, confirm_password, locked_message,
)
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.redirects import safe_next
from loginsvc.mail import notices
from loginsvc.mfa import audit, factors, mailed_code, passkeys, pending, policy, recovery, totp
from loginsvc.mfa.models import Passkey

CODE_ERROR = "That code is not valid. Check your authenticator app, or use a recovery code."
MAILED_CODE_ERROR = "That code is not valid (wrong, used, or the sign-in waited too long). Check the latest mail."
PASSWORD_ERROR = "That password is not correct."


def _refused(request: HttpRequest, template: str, context: dict[str, Any], result: LoginResult) -> HttpResponse:
    """The page again with the error a failed or locked step gets (429 with Retry-After when locked)."""
    if result.outcome is Outcome.LOCKED:
        context["error"] = locked_message(result)
        response = render(request, template, context, status=429)
        response["Retry-After"] = str(result.retry_after)
        return response
    return render(request, template, context, status=401)


@never_cache
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def second_step_view(request: HttpRequest) -> HttpResponse:
    """The sign-in's second step for a browser whose password was right (mfa/pending.py)."""
    next_url = _next(request)
    waiting = pending.current(request)
    methods = factors.methods_of(waiting.user) if waiting is not None else []
    if waiting is not None and not methods and mailed_code.waiting(request, waiting.user):
        methods = [mailed_code.EMAIL]  # the account-wide step-up's confirmation by mail
    if not methods:  # none, expired, or the factor was removed meanwhile: start again
        pending.end(request)
        return redirect(_with_next("login", next_url))
    default = factors.WEBAUTHN if factors.WEBAUTHN in methods else methods[0]
    method = request.POST.get("method") or request.GET.get("method") or default
    method = method if method in methods else default
    context = {"next": next_url, "method": method, "methods": methods}
    if request.method != "POST":
        return render(request, "mfa/second_step.html", context)
    if method not in factors.CODE_FORMS:  # a passkey answers through its script, not this form
        return render(request, "mfa/second_step.html", {**context, "error": "Use the button to sign in with your passkey."}, status=400)
    parse, problem = factors.CODE_FORMS[method]
    code = parse(request.POST.get("code", "")[:64])
    if code is None:
        sentence = problem[:1].upper() + problem[1:] + "."
        return render(request, "mfa/second_step.html", {**context, "error": sentence}, status=400)
    result = attempt_second_factor(request, method, code, "form")
    if result.outcome is not Outcome.SUCCESS:
        error = MAILED_CODE_ERROR if method == mailed_code.EMAIL else CODE_ERROR
        return _refused(request, "mfa/second_step.html", {**context, "error": error}, result)
    return account_views.finish_form_sign_in(request, result, next_url)


def _with_next(name: str, next_url: str) -> str:
    """The URL named `name`, carrying `next` on when there is one."""
    return reverse(name) + (f"?{urlencode({'next': next_url})}" if next_url else "")


def _next(request: HttpRequest) -> str:
    """Where to go on once a factor is set up (a product that requires one sent the user here)."""
    return safe_next(request.POST.get("next") or request.GET.get("next"), request) or ""


def account_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    """What the account page shows: the app, the passkeys, the recovery codes left, the policy's word."""
    device = totp.confirmed_device(request.user)
    keys = list(Passkey.objects.filter(user=request.user).order_by("created"))
    due = policy.due(request.user) if request.GET.get("policy") == "1" else None
    return {"device": device, "passkeys": keys, "has_factor": bool(device or keys),
            "passkey_name": passkeys.default_name(request.META.get("HTTP_USER_AGENT", "")),
            "passkey_needs_password": passkeys.password_due(request.session),
            "recovery_left": recovery.remaining(request.user) if device or keys else 0,
            "next": _next(request), "required": request.GET.get("required") == "1",
            "policy_due": due, "policy_open": due is not None and due > timezone.now(), **extra}


@never_cache
@csrf_protect
@login_required
@require_POST
def app_setup_view(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app: action=start shows a new secret (QR code and text); action=confirm
    with the app's first code makes it count, and shows the first recovery codes, once."""
    if totp.confirmed_device(request.user) is not None:
        return redirect("home")
    if request.POST.get("action") == "confirm":
        device = totp.TOTPDevice.objects.filter(user=request.user, confirmed=False).first()
        code = totp.parse_code(request.POST.get("code", "")[:64])
        first = not factors.has_factor(request.user)
        if device is not None and code is not None and _confirmed(request, device, code):
            codes = factors.codes_for_new_factor(request.user, first, client_ip(request))
            if codes is None:  # a passkey came first: its recovery codes stand
                return redirect(_with_next("mfa-account", _next(request)))
            return render(request, "mfa/recovery_codes.html", {"codes": codes, "first": True, "next": _next(request)})
        if device is None:
            return redirect("home")
        return render(request, "mfa/app_setup.html", _setup_context(request, device, error=(
            "That code does not match. Type the code the app shows now." if code else
            "Type the six digits the app shows.")), status=400)
    device = totp.start_enrolment(request.user)
    return render(request, "mfa/app_setup.html", _setup_context(request, device))


def _confirmed(request: HttpRequest, device: totp.TOTPDevice, code: str) -> bool:
    """The app's first code makes it count: audited, and its owner told by mail in the same transaction."""
    with transaction.atomic():
        if not totp.confirm(device, code):
            return False
        notices.account_changed(request.user, client_ip(request), "authenticator app added")
    audit.changed(request.user.pk, client_ip(request), "authenticator app added")
    return True


def _setup_context(request: HttpRequest, device: totp.TOTPDevice, **extra: Any) -> dict[str, Any]:
    uri = totp.provisioning_uri(device, request.user.email)
    secret = totp.secret_of(device)
    return {"qr": totp.qr_svg(uri), "secret": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
            "next": _next(request), **extra}


def password_refused(request: HttpRequest) -> HttpResponse | None:
    """None when the password re-entered for a sensitive change is right, else the account page
    with the error (429 with Retry-After when locked)."""
    result = confirm_password(request, request.user, request.POST.get("password", ""), "form")
    if result.outcome is Outcome.SUCCESS:
        return None
    return _refused(request, "mfa/account.html", account_context(request, error=PASSWORD_ERROR), result)


@never_cache
@csrf_protect
@login_required
@require_http_methods(["GET", "HEAD"])
def account_view(request: HttpRequest) -> HttpResponse:
    """Two-step sign-in on the account page: what is set up, how many recovery codes are left."""
    return render(request, "mfa/account.html", account_context(request))


@never_cache
@csrf_protect
@login_required
@require_POST
def app_remove_view(request: HttpRequest) -> HttpResponse:
    """Remove the authenticator app (and the recovery codes, unless a passkey remains), password first."""
    refused = password_refused(request)
    if refused is not None:
        return refused
    with transaction.atomic():
        totp.remove(request.user)
        factors.forget_codes_if_alone(request.user)
        notices.account_changed(request.user, client_ip(request), "authenticator app removed")
    audit.changed(request.user.pk, client_ip(request), "authenticator app removed")
    return redirect("mfa-account")


@never_cache
@csrf_protect
@login_required
@require_POST
def recovery_codes_view(request: HttpRequest) -> HttpResponse:
    """A new set of recovery codes, password first; the old set stops working."""
    if not factors.has_factor(request.user):
        return redirect("mfa-account")
    refused = password_refused(request)
    if refused is not None:
        return refused
    with transaction.atomic():
        codes = recovery.new_set(request.user)
        notices.account_changed(request.user, client_ip(request), "recovery codes made")
    audit.changed(request.user.pk, client_ip(request), "recovery codes made")
    return render(request, "mfa/recovery_codes.html", {"codes": codes, "first": False})
