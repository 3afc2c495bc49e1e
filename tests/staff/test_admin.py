"""The account administration: Django's admin for active staff signed in with a second factor, through the
service's own sign-in page; every action ends what it must and is audited with the staff member.

In process (Django's test client, the real database and Redis); the deactivation seen by a real node is in
tests/staff/test_admin_nodes.py."""
from __future__ import annotations

import email
from email import policy
from typing import Any

import pytest
from django.test import Client

from loginsvc.accounts.models import User
from loginsvc.mail import delivery
from loginsvc.mfa.models import TOTPDevice
from loginsvc.staff.models import AuditEvent
from tests.conftest import PASSWORD, csrf_from, login
from tests.mfa.conftest import app_code, confirm_with_last_step, mfa_user, post_json  # noqa: F401 - mfa_user is a fixture
from tests.sso.conftest import register
from tests.sso.tokens import bearer, tokens_for

STAFF_EMAIL = "ops@example.test"


def _staff(with_factor: bool = True) -> User:
    from loginsvc.mfa import totp

    staff = User.objects.create_user(STAFF_EMAIL, PASSWORD, is_staff=True)
    if with_factor:
        device = totp.start_enrolment(staff)
        assert confirm_with_last_step(device)
    return staff


def _signed_in_staff(staff: User) -> Client:
    browser = Client(enforce_csrf_checks=True)
    assert post_json(browser, "/api/login", {"username": staff.email, "password": PASSWORD}).json()["mfa_required"]
    assert post_json(browser, "/api/login/mfa", {"method": "totp", "code": app_code(staff)}).status_code == 200
    return browser


def _action(browser: Client, action: str, *users: User) -> Any:
    return browser.post("/admin/accounts/user/", {"csrfmiddlewaretoken": csrf_from(browser), "action": action,
                                                  "_selected_action": [str(u.pk) for u in users]})


@pytest.mark.django_db
def test_the_admin_signs_in_on_the_service_page_and_asks_staff_for_a_second_factor(user: Any) -> None:
    anonymous = Client()
    first = anonymous.get("/admin/")
    assert first.status_code == 302 and first["Location"].startswith("/admin/login/")
    assert anonymous.get(first["Location"])["Location"] == "/login/?next=%2Fadmin%2F"
    assert anonymous.get("/admin/login/?next=https://evil.example/")["Location"] == "/login/?next=%2Fadmin%2F"

    not_staff = Client()
    assert login(not_staff, user.email, PASSWORD).status_code == 302
    refused = not_staff.get("/admin/login/?next=/admin/")
    assert refused.status_code == 403 and b"may not use" in refused.content

    staff = _staff(with_factor=False)
    password_only = Client()
    assert login(password_only, staff.email, PASSWORD).status_code == 302
    refused = password_only.get("/admin/login/?next=/admin/", follow=True)
    assert refused.status_code == 403 and b"second factor" in refused.content
    from loginsvc.mfa import totp  # with a factor, a password-only session is sent to sign in again

    assert confirm_with_last_step(totp.start_enrolment(staff))
    again = password_only.get("/admin/login/?next=/admin/")
    assert again.status_code == 302 and again["Location"] == "/login/?next=%2Fadmin%2F&reauth=1"

    admin = _signed_in_staff(staff)
    index = admin.get("/admin/")
    assert index.status_code == 200 and b"Account administration" in index.content
    assert "style-src 'self'" in index["Content-Security-Policy"]
    css = admin.get("/static/admin/css/base.css")
    assert css.status_code == 200 and css["Content-Type"].startswith("text/css")
    assert admin.get("/static/admin/../../__init__.py").status_code in (400, 404)  # nothing outside the folder


@pytest.mark.django_db
def test_find_an_account_and_see_its_sessions_and_audit_trail(user: Any) -> None:
    webmail = register("webmail")
    users_browser = Client(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0")
    assert login(users_browser, user.email, PASSWORD).status_code == 302
    tokens_for(users_browser, webmail)
    admin = _signed_in_staff(_staff())
    found = admin.get("/admin/accounts/user/?q=ann.example")
    assert found.status_code == 200 and [u.email for u in found.context["cl"].result_list] == [user.email]
    page = admin.get(f"/admin/accounts/user/{user.pk}/change/")
    assert page.status_code == 200
    assert b"Firefox 140" in page.content and b"Webmail" in page.content and b"login: success" in page.content
    assert admin.get("/admin/accounts/user/add/").status_code == 403  # accounts come from create_user


@pytest.mark.django_db
def test_deactivation_ends_every_session_and_token_at_once_and_is_audited(user: Any) -> None:
    webmail = register("webmail", backchannel="https://webmail.example.test/bc")
    users_browser = Client()
    assert login(users_browser, user.email, PASSWORD).status_code == 302
    tokens = tokens_for(users_browser, webmail)
    staff = _staff()
    admin = _signed_in_staff(staff)
    assert _action(admin, "deactivate", user).status_code == 302
    assert users_browser.get("/api/session").json() == {"authenticated": False}
    assert Client().get("/oidc/userinfo/", **bearer(tokens["access_token"])).status_code == 401
    user.refresh_from_db()
    assert not user.is_active
    event = AuditEvent.objects.get(user_id=user.pk, message="admin: account deactivated")
    assert event.staff_id == staff.pk and event.client_ip == "127.0.0.1"
    assert _action(admin, "activate", user).status_code == 302
    assert login(Client(), user.email, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_forced_password_reset_ends_the_password_and_mails_the_owner(user: Any, mailbox: Any) -> None:
    staff = _staff()
    admin = _signed_in_staff(staff)
    assert _action(admin, "force_password_reset", user).status_code == 302
    user.refresh_from_db()
    assert not user.has_usable_password()
    assert login(Client(), user.email, PASSWORD).status_code == 401
    delivery.deliver_due()
    [raw] = mailbox.messages
    text = email.message_from_string(raw, policy=policy.default).get_body(("plain",)).get_content()
    assert "an administrator ended the password" in text and "/recover/" in text and PASSWORD not in raw
    assert AuditEvent.objects.filter(user_id=user.pk, staff_id=staff.pk, message="admin: password reset forced").exists()


@pytest.mark.django_db
def test_reset_factors_and_end_one_session(mfa_user: Any) -> None:  # noqa: F811
    user = mfa_user
    phone = Client(enforce_csrf_checks=True)
    assert post_json(phone, "/api/login", {"username": user.email, "password": PASSWORD}).status_code == 200
    assert post_json(phone, "/api/login/mfa", {"method": "totp", "code": app_code(user)}).status_code == 200
    admin = _signed_in_staff(_staff())
    [session] = admin.get(f"/admin/accounts/user/{user.pk}/change/").context["live_sessions"]
    end = f"/admin/accounts/user/{user.pk}/sessions/{session['id']}/end/"
    assert admin.get(end).status_code == 405
    assert admin.post(end, {}).status_code == 403  # CSRF
    assert admin.post(end, {"csrfmiddlewaretoken": csrf_from(admin)}).status_code == 302
    assert phone.get("/api/session").json() == {"authenticated": False}
    assert _action(admin, "reset_factors", user).status_code == 302
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert login(Client(), user.email, PASSWORD).status_code == 302  # the password alone now


@pytest.mark.django_db
def test_staff_cannot_delete_and_the_form_cannot_bypass_the_actions(user: Any) -> None:
    admin = _signed_in_staff(_staff())
    assert admin.get(f"/admin/accounts/user/{user.pk}/delete/").status_code == 403
    form = {"csrfmiddlewaretoken": csrf_from(admin), "display_name": "Ann", "is_active": "", "is_staff": "on"}
    assert admin.post(f"/admin/accounts/user/{user.pk}/change/", form).status_code == 302
    user.refresh_from_db()
    assert (user.display_name, user.is_active, user.is_staff) == ("Ann", True, False)
    assert AuditEvent.objects.filter(user_id=user.pk, message="admin: account edited").exists()


@pytest.mark.django_db
def test_the_trail_keeps_a_sign_ins_outcome_with_its_factors_not_its_steps(mfa_user: Any) -> None:  # noqa: F811
    AuditEvent.objects.all().delete()
    browser = Client(enforce_csrf_checks=True)
    assert post_json(browser, "/api/login", {"username": mfa_user.email, "password": PASSWORD}).status_code == 200
    assert post_json(browser, "/api/login/mfa", {"method": "totp", "code": app_code(mfa_user)}).status_code == 200
    [event] = AuditEvent.objects.filter(user_id=mfa_user.pk)
    assert event.message == "login: success" and event.details["amr"] == "pwd otp mfa"
    assert login(Client(), mfa_user.email, "a wrong password").status_code == 401  # by keyed tag: not kept
    assert not AuditEvent.objects.exclude(pk=event.pk).exists()


@pytest.mark.django_db
def test_staff_cannot_act_on_staff_or_themselves_but_a_superuser_can(user: Any) -> None:
    staff = _staff()
    colleague = User.objects.create_user("colleague@example.test", PASSWORD, is_staff=True)
    admin = _signed_in_staff(staff)
    answer = _action(admin, "deactivate", colleague, staff, user)
    assert answer.status_code == 302
    colleague.refresh_from_db(), staff.refresh_from_db(), user.refresh_from_db()
    assert (colleague.is_active, staff.is_active, user.is_active) == (True, True, False)
    shown = [str(m) for m in admin.get("/admin/accounts/user/").context["messages"]]
    assert any("only a superuser" in m for m in shown) and any("your own account" in m for m in shown)
    from loginsvc.mfa import totp

    boss = User.objects.create_user("boss@example.test", PASSWORD, is_staff=True, is_superuser=True)
    assert confirm_with_last_step(totp.start_enrolment(boss))
    assert _action(_signed_in_staff(boss), "deactivate", colleague).status_code == 302
    colleague.refresh_from_db()
    assert not colleague.is_active
