"""ASVS 3.3.3 / 3.3.4 and RFC 9700 §4.14.2: every path that ends a user's right to be signed in ends all of
that user's sign-ins — tokens revoked, every product told by back-channel logout — and, independently, a
disabled user's tokens are refused by the refresh grant, userinfo and introspection.

In process (Django's test client, the real database and Redis); tests/sso/test_token_races_nodes.py
proves the same across two real gunicorn nodes."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.db import connection
from django.test import Client

from loginsvc.accounts import auth_epoch
from loginsvc.accounts.models import User
from loginsvc.sso.models import LogoutDelivery, SignIn
from tests.conftest import PASSWORD, login
from tests.sso.conftest import Product, register, token
from tests.sso.tokens import bearer, introspect, tokens_for


def alive(product: Product, tokens: dict[str, Any]) -> dict[str, bool]:
    """What each endpoint says of the product's tokens now (a refresh that works rotates them)."""
    userinfo = Client().get("/oidc/userinfo/", **bearer(tokens["access_token"])).status_code == 200
    access = introspect(product, tokens["access_token"])["active"]
    refresh_active = introspect(product, tokens["refresh_token"])["active"]
    refreshed = token(product, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    return {"userinfo": userinfo, "introspect_access": access, "introspect_refresh": refresh_active,
            "refresh": refreshed.status_code == 200}


NOTHING = {"userinfo": False, "introspect_access": False, "introspect_refresh": False, "refresh": False}
EVERYTHING = {"userinfo": True, "introspect_access": True, "introspect_refresh": True, "refresh": True}


@pytest.fixture
def signed_in_twice(user: User) -> tuple[User, dict[str, Product], dict[str, dict[str, Any]]]:
    """Two browsers of the user; webmail and admin-portal (both with back-channel URIs) in the first,
    webmail in the second."""
    products = {name: register(name, backchannel=f"https://{name}.example.test/bc") for name in ("webmail", "admin-portal")}
    got = {}
    for browser_name, names in (("a", ("webmail", "admin-portal")), ("b", ("webmail",))):
        browser = Client()
        assert login(browser, user.email, PASSWORD).status_code == 302
        for name in names:
            got[f"{browser_name}:{name}"] = tokens_for(browser, products[name])
    return user, products, got


def _deactivate(user: User) -> None:
    user.is_active = False
    user.save()


def _bulk_deactivate(user: User) -> None:
    User.objects.filter(pk=user.pk).update(is_active=False)


def _set_password(user: User) -> None:
    user.set_password("another long enough password")
    user.save()


def _bulk_password(user: User) -> None:
    User.objects.filter(pk=user.pk).update(password=make_password("another long enough password"))


def _unusable_password(user: User) -> None:
    user.set_unusable_password()
    user.save(update_fields=["password"])


def _delete(user: User) -> None:
    user.delete()


def _logout_user(user: User) -> None:
    call_command("logout_user", user.email)


def _everywhere(user: User) -> None:
    auth_epoch.sign_out_everywhere(user, by="test")


PATHS: dict[str, Callable[[User], None]] = {
    "deactivated": _deactivate, "bulk update is_active": _bulk_deactivate, "set_password": _set_password,
    "bulk update password": _bulk_password, "unusable password": _unusable_password, "deleted": _delete,
    "manage.py logout_user": _logout_user, "sign out everywhere": _everywhere,
}


@pytest.mark.parametrize("path", PATHS)
def test_every_path_that_ends_the_right_ends_every_sign_in(signed_in_twice: Any, path: str) -> None:
    user, products, got = signed_in_twice
    user_id = user.pk
    PATHS[path](User.objects.get(pk=user_id))
    for key, tokens in got.items():
        assert alive(products[key.split(":")[1]], tokens) == NOTHING, key
    assert not SignIn.objects.filter(user_id=user_id).exists()
    # Back-Channel Logout 1.0 §2.5: one logout per product per session, each naming the user.
    queued = sorted((row.application.client_id, row.sub) for row in LogoutDelivery.objects.all())
    assert queued == sorted([("webmail", str(user_id)), ("admin-portal", str(user_id)), ("webmail", str(user_id))])
    assert len({row.sid for row in LogoutDelivery.objects.all()}) == 2


def test_a_bulk_change_of_other_users_leaves_these_sign_ins_alone(signed_in_twice: Any) -> None:
    user, products, got = signed_in_twice
    User.objects.create_user("bob@example.test", PASSWORD)
    User.objects.filter(email="bob@example.test").update(is_active=False)
    User.objects.filter(pk=user.pk).update(display_name="Ann")
    assert alive(products["webmail"], got["a:webmail"]) == EVERYTHING
    assert not LogoutDelivery.objects.exists()


def test_saves_that_keep_the_right_keep_the_sign_ins(signed_in_twice: Any) -> None:
    """A login's last_login, a name change, and the re-hash of an old hash at login (same password)."""
    user, products, got = signed_in_twice
    user = User.objects.get(pk=user.pk)
    user.display_name = "Ann"
    user.save()
    user.save(update_fields=["last_login"])
    with connection.cursor() as cursor:  # an old PBKDF2 hash, as a migrated account has
        cursor.execute("UPDATE accounts_user SET password = %s WHERE id = %s",
                       [make_password(PASSWORD, hasher="pbkdf2_sha256"), user.pk])
    browser = Client()
    assert login(browser, user.email, PASSWORD).status_code == 302
    assert User.objects.get(pk=user.pk).password.startswith("argon2")  # upgraded at login
    assert alive(products["webmail"], got["a:webmail"]) == EVERYTHING
    assert not LogoutDelivery.objects.exists()


def test_3_3_3_a_user_disabled_behind_the_models_back_is_refused_everywhere(signed_in_twice: Any) -> None:
    """Raw SQL sends no signal, so no token was revoked: the checks on the user still refuse them all."""
    user, products, got = signed_in_twice
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_user SET is_active = %s WHERE id = %s", [False, user.pk])
    assert alive(products["webmail"], got["a:webmail"]) == NOTHING


def test_a_code_of_a_disabled_user_is_invalid_grant(user: User, signed_in: Client, product: Product) -> None:
    from tests.sso.conftest import code_for, exchange

    code, verifier, _params = code_for(signed_in, product)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_user SET is_active = %s WHERE id = %s", [False, user.pk])
    response = exchange(product, code, verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_deactivation_saved_after_an_unrelated_partial_save_still_ends_the_sign_ins(signed_in_twice: Any) -> None:
    """What the object remembers of the database follows what each save wrote, and refresh_from_db."""
    user, products, got = signed_in_twice
    user = User.objects.get(pk=user.pk)
    user.is_active = False
    user.save(update_fields=["display_name"])       # is_active not written: still active in the database
    user.save(update_fields=["is_active"])          # now it is
    assert not SignIn.objects.filter(user_id=user.pk).exists() and LogoutDelivery.objects.count() == 3
    assert alive(products["webmail"], got["a:webmail"]) == NOTHING


def test_a_reloaded_user_is_judged_against_what_was_reloaded(signed_in_twice: Any) -> None:
    user, products, got = signed_in_twice
    User.objects.filter(pk=user.pk).update(is_active=False)   # ends these sign-ins
    stale = User.objects.get(pk=user.pk)                      # loaded while disabled
    User.objects.filter(pk=user.pk).update(is_active=True)    # enabled again elsewhere
    browser = Client()
    assert login(browser, user.email, PASSWORD).status_code == 302
    fresh = tokens_for(browser, products["webmail"])
    stale.refresh_from_db()
    stale.is_active = False
    stale.save()
    from oauth2_provider.models import AccessToken

    assert not AccessToken.objects.filter(user_id=user.pk).exists()   # revoked, not only refused
    assert alive(products["webmail"], fresh) == NOTHING
