"""The admin site at /admin/: staff only, signed in on the service's own page, with a second factor.

Django's AdminSite with three differences. Who may enter: an active staff account whose session
signed in with a second factor (RFC 8176 "mfa" in its amr), since an admin session can end anyone's
sign-ins. Where one signs in: the service's own login page (its throttling, its second step, its
audit), never the admin's own form. Messages: the admin reports each action through Django's
messages framework, which is set up for admin views alone (`admin_view`), so the middleware chain
that the node's fast paths mirror stays as it is.
"""
from __future__ import annotations

import functools
from typing import Any, Callable
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.messages.storage import default_storage
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from loginsvc.mfa import factors
from loginsvc.sso import central

# Admin pages load the admin's own style sheets and scripts from here; nothing inline runs.
ADMIN_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SIGN_IN, NOT_STAFF, SECOND_FACTOR = "sign-in", "not-staff", "second-factor"


def refusal(request: HttpRequest) -> str | None:
    """Why this request may not use the admin, or None."""
    user = request.user
    if not user.is_authenticated:
        return SIGN_IN
    if not (user.is_active and user.is_staff):
        return NOT_STAFF
    if "mfa" not in central.amr(request):
        return SECOND_FACTOR
    return None


class StaffSite(admin.AdminSite):
    site_header = "Login service: account administration"
    site_title = "Account administration"
    index_title = "Accounts"
    enable_nav_sidebar = False

    def has_permission(self, request: HttpRequest) -> bool:
        return refusal(request) is None

    def admin_view(self, view: Callable[..., HttpResponse], cacheable: bool = False) -> Callable[..., HttpResponse]:
        inner = super().admin_view(view, cacheable)

        @functools.wraps(inner)
        def with_messages(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            request._messages = default_storage(request)  # type: ignore[attr-defined]
            response = inner(request, *args, **kwargs)
            request._messages.update(response)  # type: ignore[attr-defined]  # unshown ones wait for the next page
            response.setdefault("Content-Security-Policy", ADMIN_POLICY)
            return response

        return with_messages

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Not a form: the service's sign-in page, or why this account may not enter."""
        asked = request.GET.get("next", "")
        next_url = asked if asked.startswith(reverse("admin:index")) and "\\" not in asked else reverse("admin:index")
        reason = refusal(request)
        if reason is None:
            return redirect(next_url)
        if reason == SIGN_IN:
            return redirect(f"{reverse('login')}?{urlencode({'next': next_url})}")
        if reason == SECOND_FACTOR and factors.has_factor(request.user):
            return redirect(f"{reverse('login')}?{urlencode({'next': next_url, 'reauth': '1'})}")
        return render(request, "staff/refused.html", {"reason": reason}, status=403)

    def logout(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return redirect("logout")


site = StaffSite(name="admin")
