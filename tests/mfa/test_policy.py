"""Ops' policy LOGINSVC_MFA_REQUIRED (none | staff | all) with its grace period: who is told, who must step up."""
from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client, override_settings

from loginsvc.mfa import totp
from tests.conftest import PASSWORD, login
from tests.mfa.conftest import confirm_with_last_step, password_step
from tests.sso.conftest import authorize_params, pkce, redirect_params, register


def policy(name: str, grace: int = 604800):
    return override_settings(LOGINSVC={**settings.LOGINSVC, "MFA_REQUIRED": name, "MFA_GRACE_SECONDS": grace})


def authorize(client: Client, product, **extra: str):
    _verifier, challenge = pkce()
    return client.get("/oidc/authorize/?" + urlencode(authorize_params(product, challenge, **extra)))


@pytest.fixture
def staff(user):
    user.is_staff = True
    user.save()
    return user


@pytest.mark.django_db
def test_none_changes_nothing(client: Client, staff) -> None:
    assert password_step(client, staff).json() == {"authenticated": True, "email": staff.email}


@pytest.mark.django_db
def test_staff_covers_staff_only(client: Client, user, django_user_model) -> None:
    with policy("staff"):
        assert "mfa_enrolment_due" not in password_step(client, user).json()
        boss = django_user_model.objects.create_user("boss@example.test", PASSWORD, is_staff=True)
        due = password_step(Client(enforce_csrf_checks=True), boss).json()["mfa_enrolment_due"]
        assert abs(due - (time.time() + 604800)) < 60
        again = password_step(Client(enforce_csrf_checks=True), boss).json()["mfa_enrolment_due"]
        assert again == due  # the grace period starts once


@pytest.mark.django_db
def test_within_the_grace_period_the_password_still_signs_in_to_products(client: Client, staff) -> None:
    webmail = register("webmail")
    with policy("all"):
        response = login(client, staff.email, PASSWORD, next="https://webmail.example.test/inbox")
        assert response.status_code == 302 and response["Location"].startswith("/account/mfa/?")
        page = client.get(response["Location"]).content.decode()
        assert 'id="mfa-policy"' in page and 'id="later"' in page
        assert "code" in redirect_params(authorize(client, webmail))


@pytest.mark.django_db
def test_after_the_grace_period_products_need_the_second_factor(client: Client, staff) -> None:
    webmail = register("webmail")
    with policy("staff", grace=0):
        assert login(client, staff.email, PASSWORD).status_code == 302
        response = authorize(client, webmail)
        assert response.status_code == 302 and response["Location"].startswith("/account/mfa/?next=")
        assert redirect_params(authorize(client, webmail, prompt="none"))["error"] == "interaction_required"
        page = client.get("/account/mfa/?policy=1").content.decode()
        assert 'id="mfa-policy"' in page and 'id="later"' not in page
        device = totp.start_enrolment(staff)
        assert confirm_with_last_step(device)
        # A factor now: this session (password only) is asked for it before any product's code.
        response = authorize(client, webmail)
        assert response["Location"].startswith("/login/mfa/?next=")
