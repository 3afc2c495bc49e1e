"""HTTP views of accounts: thin wrappers around authentication.attempt_login and the session."""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from django.contrib import auth
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.conf import settings
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from loginsvc.accounts import auth_epoch, sessions
from loginsvc.accounts import audit, known_sources
from loginsvc.accounts.authentication import (
    GENERIC_ERROR, LoginResult, Outcome, attempt_login, attempt_second_factor, locked_message,
)
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.forms import MAX_PASSWORD_LENGTH, LoginForm
from loginsvc.accounts.redirects import safe_next
from loginsvc.mfa import factors, policy

API_MAX_BODY = 8192
LOGIN_NOTICE = "loginsvc_login_notice"  # session key: failed attempts to show once after sign-in


def json_error(status: int, error: str, **extra: object) -> JsonResponse:
    return JsonResponse({"error": error, **extra}, status=status)


def json_deleted(request: HttpRequest, end: Callable[[], bool], missing: str) -> HttpResponse:
    """A signed-in user's DELETE of something of theirs: 401 when not signed in, else `end()`: 204 when it
    ended something, 404 (`missing`) when there was nothing of theirs to end."""
    if not request.user.is_authenticated:
        return json_error(401, "not signed in")
    return HttpResponse(status=204) if end() else json_error(404, missing)


@never_cache
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    """The sign-in page. `next` is honoured only for this service or a registered product origin."""
    next_url = safe_next(request.POST.get("next") or request.GET.get("next"), request)
    if request.method != "POST":
        # reauth=1: single sign-on asks for the password again (prompt=login, max_age; sso/views.py).
        if request.user.is_authenticated and next_url and request.GET.get("reauth") != "1":
            return redirect(next_url)
        return render(request, "accounts/login.html", {"form": LoginForm(), "next": next_url or ""})

    form = LoginForm(request.POST)
    if not form.is_valid():
        return _login_page(request, form, GENERIC_ERROR, status=400)
    result = attempt_login(request, form.cleaned_data["username"], form.cleaned_data["password"], "form")
    if result.outcome is Outcome.SUCCESS:
        return finish_form_sign_in(request, result, next_url)
    if result.outcome is Outcome.MFA_REQUIRED:  # the second step's page (mfa/views.py), `next` carried on
        return redirect(reverse("login-mfa") + (f"?{urlencode({'next': next_url})}" if next_url else ""))
    if result.outcome is Outcome.LOCKED:
        response = _login_page(request, form, locked_message(result), status=429)
        response["Retry-After"] = str(result.retry_after)
        return response
    return _login_page(request, form, GENERIC_ERROR, status=401)


def after_sign_in_url(request: HttpRequest, result: LoginResult, next_url: str | None) -> str:
    """Where a browser just signed in goes: `next`, or first the home page when there were failed
    attempts to report (home_view pops the notice and offers `next`), or first the account page when
    ops' policy wants a second factor the user has not set up (mfa/policy.py)."""
    if policy.due(result.user) is not None:
        return f"{reverse('mfa-account')}?{urlencode({'next': next_url or '', 'policy': '1'})}"
    if result.failed_since_last_login:
        request.session[LOGIN_NOTICE] = {"failed": result.failed_since_last_login, "next": next_url or ""}
        return reverse("home")
    return next_url or reverse("home")


def finish_form_sign_in(request: HttpRequest, result: LoginResult, next_url: str | None) -> HttpResponse:
    """The sign-in page's answer to a browser just signed in: a redirect (after_sign_in_url)."""
    return _signed_in(request, redirect(after_sign_in_url(request, result, next_url)), result)


def _signed_in(request: HttpRequest, response: HttpResponse, result: LoginResult) -> HttpResponse:
    """The answer to a successful login also marks this browser as a known device of the account."""
    known_sources.remember_device(request, response, result.user)
    return response


def _login_page(request: HttpRequest, form: LoginForm, error: str, status: int) -> HttpResponse:
    # Never echo the password back into the page.
    username = str(form.data.get("username", ""))[:254].replace("\x00", "")
    context = {"form": LoginForm(initial={"username": username}), "error": error,
               "next": safe_next(form.data.get("next"), request) or ""}
    return render(request, "accounts/login.html", context, status=status)


@never_cache
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def logout_view(request: HttpRequest) -> HttpResponse:
    """GET shows a confirmation form (a link or prefetch must not log anyone out); POST logs out."""
    next_url = safe_next(request.POST.get("next") or request.GET.get("next"), request)
    if request.method != "POST":
        return render(request, "accounts/logout.html", {"next": next_url or ""})
    audit.logout(request, client_ip(request))
    auth.logout(request)  # flushes the session in Redis and the database
    return redirect(next_url or reverse("login"))


@never_cache
@csrf_protect
@require_http_methods(["POST"])
def logout_everywhere_view(request: HttpRequest) -> HttpResponse:
    """POST only (CSRF-checked): ends every session of this user on every node, this one included."""
    if request.user.is_authenticated:
        auth_epoch.sign_out_everywhere(request.user, by="user", ip=client_ip(request))
        auth.logout(request)
    return redirect("login")


@never_cache
@require_http_methods(["GET", "HEAD"])
def home_view(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    notice = request.session.pop(LOGIN_NOTICE, None) or {}
    return render(request, "accounts/home.html", {
        "expires_at": sessions.expires_at(request),
        "failed_attempts": notice.get("failed", 0),
        "continue_url": safe_next(notice.get("next"), request) or "",
    })


# never_cache's headers as constants: patch_cache_control costs more than the whole /api/session view.
NEVER_CACHE = (("Cache-Control", "max-age=0, no-cache, no-store, must-revalidate, private"),
               ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"))
# RFC 6749 §5.1: what token answers (and the other OAuth JSON answers) carry.
OAUTH_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


def no_store(response: HttpResponse, headers: tuple[tuple[str, str], ...] = NEVER_CACHE) -> HttpResponse:
    """`response` with `headers` set, in order: the one helper of every answer no cache may keep."""
    for name, value in headers:
        response[name] = value
    return response


def oauth_no_store(response: HttpResponse) -> HttpResponse:
    """`response` with OAuth's no-store headers (RFC 6749 §5.1): every OAuth JSON answer's."""
    return no_store(response, OAUTH_NO_STORE)


def session_payload(user: AbstractBaseUser | AnonymousUser, session: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON of GET /api/session; also built by the fast path (accounts/fast_session.py)."""
    if not user.is_authenticated:
        return {"authenticated": False}
    return {
        "authenticated": True,
        "email": user.email,
        "user_id": user.pk,
        "display_name": user.display_name,
        "auth_time": session.get(sessions.AUTH_TIME),
        "expires_at": sessions.session_expires_at(session),
        "amr": session.get(sessions.AMR) or ["pwd"],  # RFC 8176; sessions from before it was kept: a password
    }


def api_session_view(request: HttpRequest) -> HttpResponse:
    """Who is signed in on this browser, for the products' back ends and the load tests.

    Also gives a client without one the CSRF cookie, so it can then POST /api/login. Only then:
    a new or re-masked token costs more than the rest of this hot endpoint together.

    Plain logged-in GETs usually never get here: loginsvc/wsgi.py answers them on a fast path
    (accounts/fast_session.py) with the same bytes, and hands everything else to this view.
    """
    if settings.CSRF_COOKIE_NAME not in request.COOKIES:
        get_token(request)
    if request.method not in ("GET", "HEAD"):
        response = json_error(405, "method not allowed", allowed=["GET", "HEAD"])
        response["Allow"] = "GET, HEAD"
        return no_store(response)
    return no_store(JsonResponse(session_payload(request.user, request.session)))


def json_body(request: HttpRequest, max_body: int = API_MAX_BODY) -> dict[str, Any] | JsonResponse:
    """The POSTed JSON object of an /api/ view, or the error to answer."""
    if request.method != "POST":
        response = json_error(405, "method not allowed", allowed=["POST"])
        response["Allow"] = "POST"
        return response
    if request.content_type != "application/json":
        return json_error(415, "expected Content-Type: application/json")
    if int(request.META.get("CONTENT_LENGTH") or 0) > max_body or len(request.body) > max_body:
        return json_error(413, "request body too large")
    try:
        payload = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return json_error(400, "body is not valid UTF-8 JSON")
    if not isinstance(payload, dict):
        return json_error(400, "body must be a JSON object")
    return payload


def too_many(retry_after: int, error: str = "locked", **extra: object) -> JsonResponse:
    """429 with the wait twice: `retry_after` in the body for scripts, Retry-After (RFC 9110 §10.2.3) for clients."""
    response = json_error(429, error, retry_after=retry_after, **extra)
    response["Retry-After"] = str(retry_after)
    return response


def locked_response(result: LoginResult) -> JsonResponse:
    # reason "account": the account-wide step-up; a known device or network still gets in.
    return too_many(result.retry_after, reason="account" if result.refused_by == "account" else "address")


def api_signed_in(request: HttpRequest, result: LoginResult, payload: Mapping[str, Any] | None = None) -> HttpResponse:
    """The JSON answer to a sign-in. A page's script that sent `next` (a passkey sign-in) also gets
    "redirect": where the browser goes now, as after the sign-in form."""
    body: dict[str, object] = {"authenticated": True, "email": result.user.email}
    if payload is not None and "next" in payload:
        next_url = payload["next"] if isinstance(payload["next"], str) else ""
        body["redirect"] = after_sign_in_url(request, result, safe_next(next_url, request))
    if result.failed_since_last_login:  # present only when there were some
        body["failed_attempts_since_last_login"] = result.failed_since_last_login
    due = policy.due(result.user)
    if due is not None:  # ops' policy wants a second factor by then (epoch seconds); present only then
        body["mfa_enrolment_due"] = int(due.timestamp())
    return _signed_in(request, JsonResponse(body), result)


@never_cache
@csrf_protect
def api_login_view(request: HttpRequest) -> HttpResponse:
    """JSON login: body {"username": ..., "password": ...}; CSRF token in the X-CSRFToken header.
    An account with a second factor answers {"mfa_required": true, "methods": [...]}: POST
    /api/login/mfa then finishes the sign-in."""
    payload = json_body(request)
    if isinstance(payload, JsonResponse):
        return payload
    username, password = payload.get("username"), payload.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return json_error(400, "username and password must be strings")
    try:
        (username + password).encode("utf-8")  # JSON allows lone surrogates; UTF-8 does not
    except UnicodeEncodeError:
        return json_error(400, "username and password must be valid Unicode text")
    if len(username) > 254 or len(password) > MAX_PASSWORD_LENGTH or "\x00" in username + password:
        return json_error(401, GENERIC_ERROR)
    result = attempt_login(request, username, password, "api")
    if result.outcome is Outcome.LOCKED:
        return locked_response(result)
    if result.outcome is Outcome.FAILURE:
        return json_error(401, GENERIC_ERROR)
    if result.outcome is Outcome.MFA_REQUIRED:
        return JsonResponse({"mfa_required": True, "methods": list(result.methods)})
    return api_signed_in(request, result)


@never_cache
@csrf_protect
def api_login_mfa_view(request: HttpRequest) -> HttpResponse:
    """The second step of a JSON login: body {"method": "totp"|"recovery", "code": ...} or {"method":
    "webauthn", "credential": {...}}, the CSRF token as for /api/login. 200 as a sign-in, 401 (the generic error: a wrong, replayed or used code, or
    no sign-in waiting in this browser), 429 with Retry-After, 400 for a code that cannot be one."""
    payload = json_body(request)
    if isinstance(payload, JsonResponse):
        return payload
    method, code = payload.get("method"), payload.get("code")
    if method == factors.WEBAUTHN:  # a passkey's answer to POST /api/passkey/options (second-step)
        if not isinstance(payload.get("credential"), dict):
            return json_error(400, "credential must be the passkey's answer, a JSON object")
        parsed: object = payload["credential"]
    elif method in factors.CODE_FORMS:
        parse, problem = factors.CODE_FORMS[method]
        parsed = parse(code)
        if parsed is None:
            return json_error(400, problem)
    else:
        return json_error(400, "method must be one of: " + ", ".join([*factors.CODE_FORMS, factors.WEBAUTHN]))
    result = attempt_second_factor(request, method, parsed, "api")
    if result.outcome is Outcome.LOCKED:
        return locked_response(result)
    if result.outcome is not Outcome.SUCCESS:
        return json_error(401, GENERIC_ERROR)
    return api_signed_in(request, result, payload)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """403 for a missing or wrong CSRF token: JSON for the API, a short page otherwise."""
    if request.path_info.startswith("/api/"):
        return json_error(403, "CSRF token missing or incorrect")
    return render(request, "accounts/csrf_failure.html", status=403)
