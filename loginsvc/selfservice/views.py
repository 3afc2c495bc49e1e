"""Pages and JSON endpoints of self-service: the account page, changing the password, recovering a forgotten one.

Thin: the decisions are in passwords.py and recovery.py. Every POST is CSRF-checked (the JSON ones
like /api/login: the token in X-CSRFToken), answers carry no-store, and no answer echoes a password
or a code.
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from loginsvc.accounts.views import json_body, json_error, too_many
from loginsvc.selfservice import codes, emails, passwords, recovery

ASKED = "If an account has this address, we have sent it a code. It works for 15 minutes, in this browser only."
CODE_ERROR = "That code is not valid (wrong, expired or used). Check the latest mail, or ask for a new code."
LOCKED_ERROR = "Too many attempts. Please wait and try again."
FACTOR_DUE = ("Your account has two-step sign-in: type the code again with a code from your authenticator app "
              "or one of your recovery codes.")


def _is_address(text: str) -> bool:
    """Whether `text` can be an email address (says nothing of whether it has an account)."""
    try:
        validate_email(text)
    except ValidationError:
        return False
    return len(text) <= 254


def _strings(payload: dict[str, Any], *names: str) -> list[str] | JsonResponse:
    """The named fields, each a string of valid Unicode text, or the 400 to answer."""
    values = [payload.get(name) for name in names]
    if not all(isinstance(v, str) for v in values):
        return json_error(400, f"{', '.join(names)} must be strings")
    try:
        "".join(values).encode("utf-8")  # type: ignore[arg-type]  # JSON allows lone surrogates
    except UnicodeEncodeError:
        return json_error(400, "fields must be valid Unicode text")
    return values  # type: ignore[return-value]


@never_cache
@login_required
@require_http_methods(["GET", "HEAD"])
def account_view(request: HttpRequest) -> HttpResponse:
    """The account page: what a signed-in person can look after."""
    return render(request, "selfservice/account.html")


@never_cache
@csrf_protect
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def password_view(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return render(request, "selfservice/password.html")
    answer = passwords.change(request, request.POST.get("current_password", ""),
                              request.POST.get("new_password", ""), "form")
    if answer.result is passwords.Result.CHANGED:
        return render(request, "selfservice/password.html", {"changed": True})
    errors = {passwords.Result.WRONG: ["Your current password is not correct."],
              passwords.Result.LOCKED: [LOCKED_ERROR]}.get(answer.result, list(answer.problems))
    status = {passwords.Result.WRONG: 401, passwords.Result.LOCKED: 429}.get(answer.result, 400)
    response = render(request, "selfservice/password.html", {"errors": errors}, status=status)
    if answer.result is passwords.Result.LOCKED:
        response["Retry-After"] = str(answer.retry_after)
    return response


@never_cache
@csrf_protect
def api_password_view(request: HttpRequest) -> HttpResponse:
    """POST {"current_password", "new_password"}: 200, 400 with the validators' messages, 401, 429."""
    if not request.user.is_authenticated:
        return json_error(401, "not signed in")
    payload = json_body(request)
    if isinstance(payload, JsonResponse):
        return payload
    fields = _strings(payload, "current_password", "new_password")
    if isinstance(fields, JsonResponse):
        return fields
    answer = passwords.change(request, fields[0], fields[1], "api")
    if answer.result is passwords.Result.CHANGED:
        return JsonResponse({"changed": True})
    if answer.result is passwords.Result.LOCKED:
        return too_many(answer.retry_after)
    if answer.result is passwords.Result.WRONG:
        return json_error(401, "current password is not correct")
    return json_error(400, "new password refused", problems=list(answer.problems))


@never_cache
@csrf_protect
def api_recover_view(request: HttpRequest) -> HttpResponse:
    """POST {"email"}: 202, the same for every address (429 only for a network asking too often)."""
    payload = json_body(request)
    if isinstance(payload, JsonResponse):
        return payload
    fields = _strings(payload, "email")
    if isinstance(fields, JsonResponse):
        return fields
    if not _is_address(fields[0]):
        return json_error(400, "email must be an email address")
    wait = recovery.ask(request, fields[0])
    return too_many(wait) if wait else JsonResponse({"status": "sent if the address has an account"}, status=202)


def _confirm_json(answer: recovery.Answer) -> JsonResponse:
    if answer.result is recovery.Result.DONE:
        return JsonResponse({"reset": True, "signed_out_everywhere": True})
    if answer.result is recovery.Result.LOCKED:
        return too_many(answer.retry_after)
    if answer.result is recovery.Result.WEAK:
        return json_error(400, "new password refused", problems=list(answer.problems))
    if answer.result is recovery.Result.FACTOR_DUE:
        return json_error(401, "second factor required", mfa_required=True, methods=list(answer.methods))
    return json_error(400, CODE_ERROR)


@never_cache
@csrf_protect
def api_recover_confirm_view(request: HttpRequest) -> HttpResponse:
    """POST {"email", "code", "new_password"} (+ "method", "mfa_code" for an account with a second
    factor): 200; 400 generic for a wrong or expired code; 401 when the second factor is due; 429."""
    payload = json_body(request)
    if isinstance(payload, JsonResponse):
        return payload
    fields = _strings(payload, "email", "code", "new_password")
    if isinstance(fields, JsonResponse):
        return fields
    code = recovery.parse_code(fields[1])
    if code is None:
        return json_error(400, CODE_ERROR)
    return _confirm_json(recovery.confirm(request, fields[0][:254], code, fields[2],
                                          payload.get("method"), payload.get("mfa_code")))


@never_cache
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def recover_view(request: HttpRequest) -> HttpResponse:
    """The page: ask for a code (step 1), then the code, a new password and the second factor if due."""
    if request.method != "POST":
        return render(request, "selfservice/recover.html", {"step": "ask"})
    email = request.POST.get("email", "")[:254]
    if not _is_address(email):
        return render(request, "selfservice/recover.html", {"step": "ask", "email": email,
                                                            "errors": ["Type your email address."]}, status=400)
    if request.POST.get("step") != "confirm":
        wait = recovery.ask(request, email)
        context = {"step": "confirm", "email": email, "notice": ASKED} if not wait else \
            {"step": "ask", "email": email, "errors": [LOCKED_ERROR]}
        return render(request, "selfservice/recover.html", context, status=429 if wait else 200)
    code = recovery.parse_code(request.POST.get("code", ""))
    method = (request.POST.get("method") or None) if request.POST.get("mfa_code") else None  # no factor code: none
    answer = recovery.confirm(request, email, code, request.POST.get("new_password", ""), method,
                              request.POST.get("mfa_code")) if code else recovery.Answer(recovery.Result.REFUSED)
    if answer.result is recovery.Result.DONE:
        return render(request, "selfservice/recover.html", {"step": "done"})
    context: dict[str, Any] = {"step": "confirm", "email": email}
    context["errors"] = {recovery.Result.WEAK: list(answer.problems), recovery.Result.LOCKED: [LOCKED_ERROR],
                         recovery.Result.FACTOR_DUE: [FACTOR_DUE]}.get(answer.result, [CODE_ERROR])
    status = {recovery.Result.LOCKED: 429, recovery.Result.FACTOR_DUE: 401}.get(answer.result, 400)
    response = render(request, "selfservice/recover.html", context, status=status)
    if status == 429:
        response["Retry-After"] = str(answer.retry_after)
    return response


EMAIL_ERRORS = {
    emails.Result.WRONG: "That is not right (a wrong password, or a code that is wrong, expired or used).",
    emails.Result.LOCKED: LOCKED_ERROR,
    emails.Result.TAKEN: "That address cannot be used for this account.",
    emails.Result.SAME: "That is already your address.",
}
EMAIL_STATUS = {emails.Result.WRONG: 400, emails.Result.LOCKED: 429, emails.Result.TAKEN: 400, emails.Result.SAME: 400}


def _email_page(request: HttpRequest, step: str, result: emails.Result | None = None, wait: int = 0,
                **extra: Any) -> HttpResponse:
    context = {"step": step, **extra}
    if result in EMAIL_ERRORS:
        context["errors"] = [EMAIL_ERRORS[result]]  # type: ignore[index]
    response = render(request, "selfservice/email.html", context, status=EMAIL_STATUS.get(result, 200))  # type: ignore[arg-type]
    if wait:
        response["Retry-After"] = str(wait)
    return response


@never_cache
@csrf_protect
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def email_view(request: HttpRequest) -> HttpResponse:
    """Change the address: the new one and the password, then the code mailed to the new one."""
    if request.method != "POST":
        return _email_page(request, "ask")
    if request.POST.get("step") == "confirm":
        code = codes.parse(request.POST.get("code", ""))
        result, wait = emails.confirm(request, code) if code else (emails.Result.WRONG, 0)
        if result is emails.Result.CHANGED:
            return _email_page(request, "done")
        return _email_page(request, "confirm", result, wait)
    new_email = request.POST.get("new_email", "")[:254]
    if not _is_address(new_email):
        return _email_page(request, "ask", emails.Result.WRONG, new_email=new_email)
    result, wait = emails.ask(request, new_email, request.POST.get("password", ""))
    if result is emails.Result.SENT:
        return _email_page(request, "confirm", new_email=new_email)
    return _email_page(request, "ask", result, wait, new_email=new_email)


@never_cache
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def email_undo_view(request: HttpRequest) -> HttpResponse:
    """Take the old address back with the undo code mailed to it (no sign-in needed)."""
    if request.method != "POST":
        return _email_page(request, "undo")
    old_email, code = request.POST.get("email", "")[:254], emails.undo_code_form(request.POST.get("code", ""))
    result, wait = emails.undo(request, old_email, code) if code and _is_address(old_email) else (emails.Result.WRONG, 0)
    if result is emails.Result.UNDONE:
        return _email_page(request, "undone")
    return _email_page(request, "undo", result, wait)

