"""The sessions page and its JSON endpoints: list the account's sessions and mail programs, end one or all others.

Thin: the decisions are in sessions.py. CSRF as everywhere (DELETE and POST carry X-CSRFToken),
answers carry no-store, and another account's session id is answered like an unknown one (404).
"""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from loginsvc.accounts.views import json_deleted, json_error
from loginsvc.selfservice import sessions


@never_cache
@csrf_protect
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def sessions_view(request: HttpRequest) -> HttpResponse:
    """The page; its forms POST `action` = end (with `id`), end-others, or forget (with `kind`, `id`)."""
    if request.method == "POST":
        action, ok = request.POST.get("action"), False
        if action == "end":
            ok = sessions.end_one(request, request.POST.get("id", ""))
        elif action == "end-others":
            sessions.end_others(request)
            ok = True
        elif action == "end-mail-client":
            ok = sessions.end_mail_client(request, request.POST.get("id", ""))
        elif action == "forget":
            ok = sessions.forget_source(request, request.POST.get("kind", ""), request.POST.get("id", ""))
        if ok:
            return redirect("account-sessions")  # POST, redirect, GET: a reload does not ask again
        return _page(request, status=404, error="That session, device or network is not one of yours (any more).")
    return _page(request)


def _page(request: HttpRequest, status: int = 200, error: str = "") -> HttpResponse:
    context = {"sessions": sessions.listing(request), **sessions.known_sources_of(request), "error": error,
               "mail_clients": sessions.mail_clients_of(request.user)}
    return render(request, "selfservice/sessions.html", context, status=status)


@never_cache
@require_http_methods(["GET", "HEAD"])
def api_sessions_view(request: HttpRequest) -> HttpResponse:
    """GET: {"sessions": [{"id", "current", "browser", "system", "address", "first_seen", "last_seen",
    "cluster", "products"}], "mail_clients": [{"id", "kind", "name", "scope", "first_seen", "last_seen",
    "address"}]}."""
    if not request.user.is_authenticated:
        return json_error(401, "not signed in")
    return JsonResponse({"sessions": sessions.listing(request), "mail_clients": sessions.mail_clients_of(request.user)})


@never_cache
@csrf_protect
@require_http_methods(["DELETE"])
def api_session_view(request: HttpRequest, public_id: str) -> HttpResponse:
    """DELETE: 204, its product sign-ins ended too; 404 for no such other session of the user."""
    return json_deleted(request, lambda: sessions.end_one(request, public_id),
                        "no such session (this one ends with /logout/)")


@never_cache
@csrf_protect
@require_http_methods(["POST"])
def api_end_others_view(request: HttpRequest) -> HttpResponse:
    """POST: 204, every session of the user but this one ended."""
    if not request.user.is_authenticated:
        return json_error(401, "not signed in")
    sessions.end_others(request)
    return HttpResponse(status=204)


@never_cache
@csrf_protect
@require_http_methods(["DELETE"])
def api_mail_client_view(request: HttpRequest, client_id: str) -> HttpResponse:
    """DELETE: 204, that mail program signed out (its app password revoked or its tokens ended); 404."""
    return json_deleted(request, lambda: sessions.end_mail_client(request, client_id), "no such mail program")
