"""App passwords on the account page and in the API, and the mail server's login check.

Thin: decisions are in app_passwords.py and server_check.py. The account's endpoints are CSRF-checked
(JSON ones with X-CSRFToken, as /api/login), answers carry no-store, a new password appears in one
answer only. The mail server's endpoint authenticates the mail server's own client instead.
"""
from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from loginsvc import conf
from loginsvc.accounts.views import json_body, json_deleted, json_error, no_store, too_many
from loginsvc.mailclients import app_passwords, discovery, server_check
from loginsvc.sso import views as sso_views


def reauthenticate_url() -> str:
    """Where a person confirms it is them before making an app password (password, and factor if any)."""
    return f"{reverse('login')}?{urlencode({'next': reverse('app-passwords'), 'reauth': '1'})}"


@never_cache
@csrf_protect
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def app_passwords_view(request: HttpRequest) -> HttpResponse:
    """The page; its forms POST `action` = create (`name`, `scope`) or revoke (`id`)."""
    context: dict[str, object] = {}
    status = 200
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            if app_passwords.revoke(request, request.POST.get("id", "")):
                return redirect("app-passwords")
            context["error"], status = "That app password is not one of yours (any more).", 404
        elif not app_passwords.reauthenticated(request):
            return redirect(reauthenticate_url())
        else:
            try:
                context["made"] = app_passwords.create(request, request.POST.get("name", ""), request.POST.get("scope"))
            except app_passwords.Refused as exc:
                context["error"], status = str(exc), 400
    context.update({"app_passwords": app_passwords.listing(request.user), "scopes": app_passwords.SCOPES,
                    "can_create": app_passwords.reauthenticated(request), "reauthenticate": reauthenticate_url()})
    return render(request, "mailclients/app_passwords.html", context, status=status)


@never_cache
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def api_app_passwords_view(request: HttpRequest) -> HttpResponse:
    """GET: {"app_passwords": [...]}; POST {"name", "scope"}: 201 {"id", "name", "scope", "password"}, from a
    session signed in within the last 5 minutes (with its second factor, if the account has one)."""
    if not request.user.is_authenticated:
        return json_error(401, "not signed in")
    if request.method != "POST":
        return JsonResponse({"app_passwords": app_passwords.listing(request.user)})
    payload = json_body(request)
    if isinstance(payload, JsonResponse):
        return payload
    if not app_passwords.reauthenticated(request):
        return json_error(401, "reauthentication required", reauthenticate=reauthenticate_url())
    try:
        made = app_passwords.create(request, payload.get("name"), payload.get("scope"))
    except app_passwords.Refused as exc:
        return json_error(400, str(exc))
    return JsonResponse({"id": made.row.public_id, "name": made.row.name, "scope": made.row.scope,
                         "password": made.password}, status=201)


@never_cache
@csrf_protect
@require_http_methods(["DELETE"])
def api_app_password_view(request: HttpRequest, public_id: str) -> HttpResponse:
    """DELETE: 204; 404 for no such app password of this account."""
    return json_deleted(request, lambda: app_passwords.revoke(request, public_id), "no such app password")


@csrf_exempt  # a server-to-server call, authenticated by the mail server's client secret
@require_POST
def mail_check_view(request: HttpRequest) -> HttpResponse:
    """POST (form) `username`, `password`, `service` (imap, smtp, submission), `remote_ip`, with the mail
    server's client credentials: 200 {"user", "via"}; 401 {"error": "invalid_credentials"}; 429 with
    Retry-After; 400 invalid_request; 401 invalid_client."""
    client = sso_views.authenticated_client(request)
    if client is None or client.client_type != client.CLIENT_CONFIDENTIAL or client.client_id != conf.get("MAIL_SERVER_CLIENT"):
        response = JsonResponse({"error": "invalid_client"}, status=401)
        response["WWW-Authenticate"] = 'Basic realm="mail"'
        return no_store(response)
    fields = {name: request.POST.get(name, "") for name in ("username", "password", "service", "remote_ip")}
    ip = server_check.address(fields["remote_ip"])
    if fields["service"] not in server_check.SERVICES or ip is None:
        return no_store(json_error(400, "invalid_request", error_description=(
            "service (imap, smtp, submission) and remote_ip (an IP address) are required")))
    if not fields["username"] or not fields["password"]:  # what a mail client typed: a wrong login, not our error
        return no_store(json_error(401, "invalid_credentials"))
    answer = server_check.check(request, fields["username"], fields["password"], fields["service"], ip)
    if answer.result is server_check.Result.OK:
        return no_store(JsonResponse({"user": answer.email, "via": answer.via}))
    if answer.result is server_check.Result.LOCKED:
        return no_store(too_many(answer.retry_after))
    return no_store(json_error(401, "invalid_credentials"))


@never_cache
@require_http_methods(["GET", "HEAD"])
def autoconfig_view(request: HttpRequest) -> HttpResponse:
    """Thunderbird's autoconfig for a configured mail domain: from `emailaddress`, else the host name
    (autoconfig.<domain>, or the domain itself at /.well-known/autoconfig/); 404 for any other."""
    address = request.GET.get("emailaddress", "")
    domain = address.rpartition("@")[2] if "@" in address else request.get_host().partition(":")[0].removeprefix("autoconfig.")
    document = discovery.autoconfig(domain[:253])
    if document is None:
        return HttpResponse("no mail settings for that domain\n", status=404, content_type="text/plain; charset=utf-8")
    return HttpResponse(document, content_type="application/xml; charset=utf-8")


@never_cache
@csrf_protect
@login_required
@require_POST
def mobileconfig_view(request: HttpRequest, public_id: str) -> HttpResponse:
    """POST `password` (the app password just shown): an Apple configuration profile with it, made now
    and never stored; 404 unless it is that app password of this account."""
    row = app_passwords.own(request.user, public_id, request.POST.get("password", ""))
    if row is None:
        return HttpResponse("not one of your app passwords\n", status=404, content_type="text/plain; charset=utf-8")
    response = HttpResponse(discovery.mobileconfig(request.user, row.name, request.POST["password"]),
                            content_type="application/x-apple-aspen-config")
    response["Content-Disposition"] = 'attachment; filename="mail.mobileconfig"'
    return response
