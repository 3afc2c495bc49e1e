"""Sessions and devices (ASVS 3.3.4: the user can see and end their other sessions): the list with browser,
system, address, cluster and products; ending one ends its product sign-ins (tokens refused at userinfo,
a back-channel logout queued); ending all others; known devices and networks, each removable.

In process (Django's test client, the real database and Redis); tests/stack/test_sso_browser.py shows the
page in Chromium through the router."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from loginsvc import conf
from loginsvc.accounts import known_sources
from loginsvc.accounts.models import KnownDevice, KnownNetwork, SessionRecord
from loginsvc.sso import backchannel, central
from loginsvc.sso.models import SignIn
from tests.conftest import PASSWORD, csrf_from, login
from tests.mfa.conftest import post_json
from tests.sso.conftest import register
from tests.sso.test_oidc_backchannel_logout_receiver import Receiver
from tests.sso.tokens import bearer, tokens_for

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/18.1 Mobile/15E148 Safari/604.1")


def _browser(user: Any, agent: str, address: str) -> Client:
    browser = Client(enforce_csrf_checks=True, HTTP_USER_AGENT=agent, REMOTE_ADDR=address)
    assert login(browser, user.email, PASSWORD).status_code == 302
    return browser


def _delete(browser: Client, path: str) -> Any:
    return browser.delete(path, HTTP_X_CSRFTOKEN=csrf_from(browser))


@pytest.mark.django_db
def test_the_list_names_browser_system_address_cluster_and_products(user: Any, settings: Any) -> None:
    webmail = register("webmail", backchannel="https://webmail.example.test/bc")
    laptop, phone = _browser(user, FIREFOX, "198.51.100.7"), _browser(user, IPHONE, "203.0.113.9")
    tokens_for(phone, webmail)
    answer = laptop.get("/api/sessions")
    assert answer.status_code == 200 and answer["Cache-Control"].startswith("max-age=0")
    listed = answer.json()["sessions"]
    assert [s["current"] for s in listed] == [True, False]
    mine, other = listed
    assert (mine["browser"], mine["system"], mine["address"]) == ("Firefox 140", "Linux", "198.51.100.7")
    assert (other["browser"], other["system"], other["address"]) == ("Mobile Safari 18", "iOS 18", "203.0.113.9")
    assert other["products"] == ["Webmail"] and mine["products"] == []
    assert {s["cluster"] for s in listed} == {conf.get("CLUSTER")} == {"test"}
    assert set(mine) == {"id", "current", "browser", "system", "address", "first_seen", "last_seen", "cluster", "products"}
    assert mine["first_seen"] <= mine["last_seen"]


@pytest.fixture
def receiver(db: None) -> Iterator[Receiver]:
    """The products' real back-channel logout endpoint (it checks each logout token's signature)."""
    server = Receiver(Client().get("/oidc/jwks/").json()).start()
    yield server
    server.stop()


@pytest.mark.django_db
def test_ending_one_signs_it_out_and_ends_its_product_sign_ins(user: Any, receiver: Receiver) -> None:
    webmail = register("webmail", backchannel=receiver.uri("webmail"))
    laptop, phone = _browser(user, FIREFOX, "198.51.100.7"), _browser(user, IPHONE, "203.0.113.9")
    kept, ended = tokens_for(laptop, webmail), tokens_for(phone, webmail)
    phone_sid = phone.session[central.SID]
    phone_id = [s for s in laptop.get("/api/sessions").json()["sessions"] if not s["current"]][0]["id"]
    assert laptop.delete(f"/api/sessions/{phone_id}").status_code == 403  # CSRF, as every change
    assert _delete(laptop, f"/api/sessions/{phone_id}").status_code == 204
    assert phone.get("/api/session").json() == {"authenticated": False}
    assert Client().get("/oidc/userinfo/", **bearer(ended["access_token"])).status_code == 401
    assert Client().get("/oidc/userinfo/", **bearer(kept["access_token"])).status_code == 200
    assert backchannel.deliver_due() == 1  # the nodes' outbox thread does this within seconds
    [told] = receiver.received
    assert (told["sid"], told["sub"]) == (phone_sid, str(user.pk)) and receiver.rejected == []
    assert laptop.get("/api/session").json()["authenticated"] is True
    assert [s["current"] for s in laptop.get("/api/sessions").json()["sessions"]] == [True]
    assert _delete(laptop, f"/api/sessions/{phone_id}").status_code == 404  # gone: nothing to end twice


@pytest.mark.django_db
def test_ending_all_others_keeps_this_one(user: Any) -> None:
    webmail = register("webmail")
    browsers = [_browser(user, FIREFOX, f"198.51.100.{i}") for i in range(3)]
    for browser in browsers:
        tokens_for(browser, webmail)
    assert post_json(browsers[0], "/api/sessions/end-others", {}).status_code == 204
    assert [b.get("/api/session").json()["authenticated"] for b in browsers] == [True, False, False]
    assert SignIn.objects.filter(user=user).count() == 1
    assert SessionRecord.objects.filter(user=user).count() == 1


@pytest.mark.django_db
def test_another_accounts_session_and_this_one_are_not_ended_by_id(user: Any, django_user_model: Any) -> None:
    other_user = django_user_model.objects.create_user("bob@example.test", PASSWORD)
    mine, theirs = _browser(user, FIREFOX, "198.51.100.7"), _browser(other_user, FIREFOX, "198.51.100.8")
    their_id = theirs.get("/api/sessions").json()["sessions"][0]["id"]
    my_id = mine.get("/api/sessions").json()["sessions"][0]["id"]
    assert _delete(mine, f"/api/sessions/{their_id}").status_code == 404
    assert _delete(mine, f"/api/sessions/{my_id}").status_code == 404
    assert _delete(mine, "/api/sessions/%E2%80%8B%00").status_code == 404
    assert theirs.get("/api/session").json()["authenticated"] and mine.get("/api/session").json()["authenticated"]
    assert Client().get("/api/sessions").status_code == 401


@pytest.mark.django_db
def test_a_record_follows_its_session_through_a_password_change_and_a_new_sign_in(user: Any) -> None:
    browser = _browser(user, FIREFOX, "198.51.100.7")
    [before] = browser.get("/api/sessions").json()["sessions"]
    assert post_json(browser, "/api/password", {"current_password": PASSWORD,
                                                "new_password": "another long passphrase 42"}).status_code == 200
    assert [s["id"] for s in browser.get("/api/sessions").json()["sessions"]] == [before["id"]]
    assert login(browser, user.email, "another long passphrase 42").status_code == 302  # re-authentication
    assert [s["id"] for s in browser.get("/api/sessions").json()["sessions"]] == [before["id"]]


@pytest.mark.django_db
def test_signed_out_and_outdated_sessions_leave_the_list(user: Any) -> None:
    first, second, third = (_browser(user, FIREFOX, f"198.51.100.{i}") for i in range(3))
    second.post("/logout/", {"csrfmiddlewaretoken": csrf_from(second)})
    assert len(first.get("/api/sessions").json()["sessions"]) == 2
    assert SessionRecord.objects.filter(user=user).count() == 2
    user.refresh_from_db()
    user.set_password("a new password from elsewhere")
    user.save()  # every session of the old password is dead, though the store still holds them
    assert third.get("/api/session").json() == {"authenticated": False}
    newcomer = Client(enforce_csrf_checks=True, HTTP_USER_AGENT=IPHONE)
    assert login(newcomer, user.email, "a new password from elsewhere").status_code == 302
    assert [s["browser"] for s in newcomer.get("/api/sessions").json()["sessions"]] == ["Mobile Safari 18"]
    assert SessionRecord.objects.filter(user=user).count() == 1


@pytest.mark.django_db
def test_the_page_lists_sessions_and_removes_known_devices_and_networks(user: Any) -> None:
    laptop, phone = _browser(user, FIREFOX, "198.51.100.7"), _browser(user, IPHONE, "203.0.113.9")
    page = laptop.get("/account/sessions/")
    assert page.status_code == 200 and b"Firefox 140" in page.content and b"Mobile Safari 18" in page.content
    assert KnownDevice.objects.filter(user=user).count() == 2
    assert set(KnownNetwork.objects.filter(user=user).values_list("network", flat=True)) == {"198.51.100.7", "203.0.113.9"}
    phone_cookie = type("R", (), {"COOKIES": {
        known_sources.device_cookie_name(): phone.cookies[known_sources.device_cookie_name()].value}})()
    phone_device = known_sources.device_id(phone_cookie, user.email)
    assert known_sources.device_knows(phone_cookie, user.email)
    device = KnownDevice.objects.get(user=user, device_id=phone_device)
    form = {"csrfmiddlewaretoken": csrf_from(laptop), "action": "forget", "kind": "device", "id": str(device.pk)}
    assert laptop.post("/account/sessions/", form).status_code == 302
    assert not known_sources.device_knows(phone_cookie, user.email)  # the account lock holds it again
    network = KnownNetwork.objects.get(user=user, network="203.0.113.9")
    assert laptop.post("/account/sessions/", {**form, "kind": "network", "id": str(network.pk)}).status_code == 302
    assert not known_sources.network_knows(user.email, "203.0.113.9")
    assert laptop.post("/account/sessions/", {**form, "kind": "network", "id": "x"}).status_code == 404
    assert laptop.post("/account/sessions/", {**form, "kind": "table", "id": "1"}).status_code == 404
    phone_id = [s for s in laptop.get("/api/sessions").json()["sessions"] if not s["current"]][0]["id"]
    ended = laptop.post("/account/sessions/", {**form, "action": "end", "id": phone_id})
    assert ended.status_code == 302 and phone.get("/api/session").json() == {"authenticated": False}


@pytest.mark.django_db
def test_housekeeping_clears_expired_sessions_and_their_records(user: Any) -> None:
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from loginsvc.sso import housekeeping

    kept, expired = _browser(user, FIREFOX, "198.51.100.7"), _browser(user, IPHONE, "203.0.113.9")
    Session.objects.filter(session_key=expired.session.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    housekeeping.tidy(force=True)
    assert not Session.objects.filter(session_key=expired.session.session_key).exists()
    assert list(SessionRecord.objects.values_list("session_key", flat=True)) == [kept.session.session_key]


@pytest.mark.django_db
def test_a_device_cookie_from_before_device_ids_stays_known_until_its_next_sign_in(user: Any) -> None:
    from django.core import signing

    from loginsvc.accounts.audit import account_tag

    legacy = signing.dumps([account_tag(user.email, known_sources.TAG_PURPOSE)], salt=known_sources.DEVICE_SALT)
    old_browser = type("R", (), {"COOKIES": {known_sources.device_cookie_name(): legacy}})()
    assert known_sources.device_knows(old_browser, user.email) and not KnownDevice.objects.exists()
    browser = Client(enforce_csrf_checks=True)
    browser.cookies[known_sources.device_cookie_name()] = legacy
    assert login(browser, user.email, PASSWORD).status_code == 302
    upgraded = type("R", (), {"COOKIES": {known_sources.device_cookie_name():
                                          browser.cookies[known_sources.device_cookie_name()].value}})()
    assert known_sources.device_id(upgraded, user.email) == KnownDevice.objects.get(user=user).device_id


@pytest.mark.django_db
def test_ids_that_cannot_be_ours_are_unknown_before_the_database_sees_them(user: Any) -> None:
    """PostgreSQL refuses a NUL byte in text: such an id must be a 404, never a 500 (CI runs PostgreSQL)."""
    browser = _browser(user, FIREFOX, "198.51.100.7")
    form = {"csrfmiddlewaretoken": csrf_from(browser)}
    for bad in ("\x00", "a\x00b", "x" * 200, "../etc"):
        assert browser.post("/account/sessions/", {**form, "action": "end", "id": bad}).status_code == 404
        assert browser.post("/account/sessions/", {**form, "action": "end-mail-client",
                                                   "id": "app-password:" + bad}).status_code == 404
        assert browser.post("/account/app-passwords/", {**form, "action": "revoke", "id": bad}).status_code == 404
    for path in ("/api/sessions/%00", "/api/app-passwords/%00", "/api/mail-clients/app-password:%00"):
        assert _delete(browser, path).status_code == 404, path
    profile = browser.post("/account/app-passwords/%00/mobileconfig", {**form, "password": "abcd-efgh-jkmn-pqrs-tuvw"})
    assert profile.status_code == 404
