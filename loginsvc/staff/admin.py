"""Accounts in the admin: find them, see their sessions, factors and audit trail, and act on them.

Every change goes through actions.py (audited with the staff member, ending sign-ins where it
must); the form itself edits only the display name, so no field can bypass that. Staff may view
and act on accounts; only superusers may delete one (deletion ends its sign-ins too). Accounts
are created with `manage.py create_user`, which asks for a password the right way.
"""
from __future__ import annotations

from typing import Any, Callable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from loginsvc.accounts import session_registry
from loginsvc.accounts.client_ip import client_ip
from loginsvc.accounts.models import User
from loginsvc.mfa import factors
from loginsvc.selfservice import sessions as session_lists
from loginsvc.staff import actions, trail
from loginsvc.staff.site import site

Action = Callable[[Any, User, str], Any]


def _admin_action(act: Action, name: str, description: str, done: str) -> Callable[..., None]:
    """An action of the account list that runs `act` on each selected account and says how many it changed."""
    def run(modeladmin: admin.ModelAdmin, request: HttpRequest, users: QuerySet[User]) -> None:
        count, refused = 0, []
        for user in users:
            try:
                count += act(request.user, user, client_ip(request)) is not False
            except actions.NotAllowed as exc:
                refused.append(f"{user.email}: {exc}")
        messages.success(request, f"{done}: {count} account(s).")
        for line in refused:
            messages.warning(request, line)

    run.__name__ = name  # the admin names an action by its function
    return admin.action(description=description)(run)


ACTIONS = [
    _admin_action(actions.deactivate, "deactivate", "Deactivate (ends every session and product sign-in at once)",
                  "Deactivated"),
    _admin_action(actions.activate, "activate", "Activate again", "Activated"),
    _admin_action(actions.force_password_reset, "force_password_reset",
                  "Force a password reset (ends the password; the owner is mailed how to choose one)",
                  "Password ended, owner told by mail"),
    _admin_action(actions.reset_factors, "reset_factors",
                  "Reset second factors (the owner lost them all; the owner is told by mail)", "Second factors removed"),
    _admin_action(actions.end_sessions, "end_sessions", "Sign out everywhere (sessions, product sign-ins, tokens)",
                  "Signed out everywhere"),
]


@admin.register(User, site=site)
class UserAdmin(admin.ModelAdmin):
    list_display = ("email", "display_name", "is_active", "is_staff", "second_factors", "last_login")
    list_filter = ("is_active", "is_staff")
    search_fields = ("email", "display_name")
    ordering = ("email",)
    fields = ("email", "display_name", "is_active", "is_staff", "is_superuser", "second_factors",
              "date_joined", "last_login")
    readonly_fields = ("email", "is_active", "is_staff", "is_superuser", "second_factors", "date_joined", "last_login")
    actions = ACTIONS
    change_form_template = "staff/user_change_form.html"

    @admin.display(description="second factors")
    def second_factors(self, user: User) -> str:
        return ", ".join(factors.methods_of(user)) or "none"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return site.has_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return site.has_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # manage.py create_user: the password typed, never shown to staff

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return site.has_permission(request) and request.user.is_superuser

    def has_module_permission(self, request: HttpRequest) -> bool:
        return site.has_permission(request)

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if form.changed_data:
            actions.audited(request.user, obj, "account edited", client_ip(request), fields=",".join(form.changed_data))

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        actions.audited(request.user, obj, "account deleted", client_ip(request))
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            self.delete_model(request, user)  # one by one: each audited, each one's sign-ins ended

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The account with its live sessions (each can be ended) and its audit trail."""
        user = self.get_object(request, object_id)
        if user is not None and self.has_view_permission(request, user):
            extra_context = {**(extra_context or {}), "audit_events": trail.events_of(user),
                             "live_sessions": session_lists.as_listed(user, session_registry.live(user))}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[Any]:
        return [path("<int:user_id>/sessions/<str:public_id>/end/", self.admin_site.admin_view(self.end_session_view),
                     name="accounts_user_end_session")] + super().get_urls()

    def end_session_view(self, request: HttpRequest, user_id: int, public_id: str) -> HttpResponse:
        return _end_session(request, user_id, public_id)


@require_POST
def _end_session(request: HttpRequest, user_id: int, public_id: str) -> HttpResponse:
    user = get_object_or_404(User, pk=user_id)
    try:
        ended = actions.end_session(request.user, user, public_id, client_ip(request))
    except actions.NotAllowed as exc:
        messages.warning(request, str(exc))
        return HttpResponseRedirect(reverse("admin:accounts_user_change", args=[user.pk]))
    if ended:
        messages.success(request, "Session ended, with its product sign-ins.")
    else:
        messages.warning(request, "That session had already ended.")
    return HttpResponseRedirect(reverse("admin:accounts_user_change", args=[user.pk]))
