"""Auth epochs: "sign out everywhere" and user changes reach every process on its next request."""
from __future__ import annotations

import pytest
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import Client, override_settings

from loginsvc.accounts import auth_epoch, backends
from loginsvc.accounts.models import User
from tests import plugin
from tests.conftest import PASSWORD, create_user_in, csrf_from, login
from tests.support import Browser, manage

EMAIL, NODE_PASSWORD = "frank@example.test", "a long password for two nodes"


def signed_in(user: User) -> Client:
    client = Client(enforce_csrf_checks=True)
    assert login(client, user.email, PASSWORD).status_code == 302
    assert client.get("/api/session").json()["authenticated"] is True  # the user is cached now
    return client


@pytest.mark.django_db
def test_sign_out_everywhere_ends_every_session_of_the_user(user: User, caplog) -> None:
    here, elsewhere = signed_in(user), signed_in(user)
    assert b'action="/logout/everywhere/"' in here.get("/").content  # the button on the signed-in page
    caplog.set_level("INFO", logger="loginsvc.accounts.auth_epoch")
    response = here.post("/logout/everywhere/", {"csrfmiddlewaretoken": here.cookies["csrftoken"].value})
    assert response.status_code == 302 and response["Location"] == "/login/"
    [record] = [r for r in caplog.records if r.name == "loginsvc.accounts.auth_epoch"]
    assert (record.getMessage(), record.user_id, record.by, record.client_ip) == (
        "logout: every session", user.pk, "user", "127.0.0.1")
    assert here.get("/api/session").json() == {"authenticated": False}
    assert elsewhere.get("/api/session").json() == {"authenticated": False}
    assert signed_in(user).get("/api/session").json()["email"] == user.email  # signing in again works


@pytest.mark.django_db
def test_sign_out_everywhere_is_a_csrf_checked_post(user: User) -> None:
    client = signed_in(user)
    assert client.get("/logout/everywhere/").status_code == 405
    assert client.post("/logout/everywhere/").status_code == 403
    assert client.get("/api/session").json()["authenticated"] is True
    anonymous = Client(enforce_csrf_checks=True)
    response = anonymous.post("/logout/everywhere/", {"csrfmiddlewaretoken": csrf_from(anonymous)})
    assert response.status_code == 302 and response["Location"] == "/login/"


@pytest.mark.django_db
def test_existing_sessions_keep_their_hash_until_the_first_new_epoch(user: User) -> None:
    assert user.get_session_auth_hash() == AbstractBaseUser._get_session_auth_hash(user)
    auth_epoch.sign_out_everywhere(user, by="test")
    assert user.auth_epoch == 1 and user.get_session_auth_hash() != AbstractBaseUser._get_session_auth_hash(user)


@pytest.mark.django_db
def test_a_cached_user_is_dropped_when_another_process_publishes_a_change(user: User) -> None:
    backends.CachedModelBackend().get_user(user.pk)
    assert backends.cached_user(str(user.pk)) is not None
    plugin.REDIS.client().incr(auth_epoch.KEY_PREFIX + str(user.pk))  # what a save on another node does
    assert backends.cached_user(str(user.pk)) is None
    backends.CachedModelBackend().get_user(user.pk)
    plugin.REDIS.client().incr(auth_epoch.ALL_KEY)  # what a QuerySet.update() of users does
    assert backends.cached_user(str(user.pk)) is None


@pytest.mark.django_db
def test_saves_and_bulk_updates_publish_after_the_commit(user: User, django_capture_on_commit_callbacks) -> None:
    redis = plugin.REDIS.client()
    with django_capture_on_commit_callbacks(execute=True):
        user.is_active = False
        user.save()
        assert redis.get(auth_epoch.KEY_PREFIX + str(user.pk)) is None  # not before the commit
    assert redis.get(auth_epoch.KEY_PREFIX + str(user.pk)) == b"1"
    with django_capture_on_commit_callbacks(execute=True):
        User.objects.filter(pk=user.pk).update(is_active=True)
    assert redis.get(auth_epoch.ALL_KEY) == b"1"
    assert 0 < redis.ttl(auth_epoch.ALL_KEY) <= auth_epoch.KEY_TTL_SECONDS


@pytest.mark.django_db
def test_with_redis_down_users_come_from_the_database(user: User, settings, own_redis) -> None:
    """Nobody is logged out, and a change nobody could publish is still seen at once."""
    caches = {"default": {**settings.CACHES["default"], "LOCATION": own_redis.url}}
    with override_settings(CACHES=caches):
        backend = backends.CachedModelBackend()
        assert backend.get_user(user.pk) is not None
        own_redis.kill()
        assert backend.get_user(user.pk) is not None  # from the database
        User.objects.filter(pk=user.pk).update(is_active=False)  # its news cannot reach Redis
        assert backend.get_user(user.pk) is None
        assert backends._users == {}


def test_logout_user_refuses_bad_input_with_one_line(stack) -> None:
    node = stack("blue-1")
    for argument, message in (("nobody@example.test", "no account 'nobody@example.test'"),
                              ("not an address", "'not an address' is not an email address")):
        result = manage(node.env, "logout_user", argument, check=False)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [f"CommandError: {message}"]


def _shell(env: dict[str, str], code: str) -> None:
    manage(env, "shell", "-v", "0", "-c", "from loginsvc.accounts.models import User\n" + code)


def test_revocation_on_one_node_is_refused_on_the_other_at_the_next_request(stack) -> None:
    """Real gunicorn nodes: A caches the user, B (or ops beside it) changes it, A's next request knows."""
    a, b = stack("blue-1"), stack("green-1", cluster="green")
    create_user_in(b, EMAIL, NODE_PASSWORD)
    lookup = f"User.objects.get(email={EMAIL!r})"

    def signed_in_on_a() -> Browser:
        browser = Browser(a.url)
        assert browser.login(EMAIL, NODE_PASSWORD).status_code == 200
        for _ in range(2):  # the second answer comes from A's user cache (and the fast path)
            assert browser.whoami()["authenticated"] is True
        return browser

    # ops: manage.py logout_user, run beside node B
    browser, other = signed_in_on_a(), Browser(b.url)
    assert other.login(EMAIL, NODE_PASSWORD).status_code == 200
    assert manage(b.env, "logout_user", EMAIL.upper()).stdout.strip() == f"signed out every session of {EMAIL}"
    assert browser.whoami() == {"authenticated": False}
    assert other.whoami() == {"authenticated": False}

    # the user: "sign out all my sessions" on node B
    browser, other = signed_in_on_a(), Browser(b.url)
    assert other.login(EMAIL, NODE_PASSWORD).status_code == 200
    response = other.call("POST", "/logout/everywhere/", headers={"X-CSRFToken": other.csrf_token()})
    assert response.status_code == 302
    assert browser.whoami() == {"authenticated": False}

    # a password change, and a deactivation with QuerySet.update(), made elsewhere
    browser = signed_in_on_a()
    _shell(b.env, f"u = {lookup}\nu.set_password({NODE_PASSWORD + ' 2'!r})\nu.save()")
    assert browser.whoami() == {"authenticated": False}
    browser = Browser(a.url)
    assert browser.login(EMAIL, NODE_PASSWORD + " 2").status_code == 200
    assert browser.whoami()["authenticated"] is True and browser.whoami()["authenticated"] is True
    _shell(b.env, f"User.objects.filter(email={EMAIL!r}).update(is_active=False)")
    assert browser.whoami() == {"authenticated": False}
