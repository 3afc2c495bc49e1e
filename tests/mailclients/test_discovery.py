"""How mail clients find their settings: Thunderbird's autoconfig document (config-v1.1.xml) for the configured
mail domains, the Thunderbird add-on's oauth_provider manifest, and an Apple configuration profile made from an
app password just shown (never stored)."""
from __future__ import annotations

import json
import plistlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from loginsvc.mailclients import discovery
from tests.conftest import PASSWORD, csrf_from, login

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mail_settings(settings: Any) -> None:
    settings.LOGINSVC = {**settings.LOGINSVC, "MAIL_DOMAINS": ("example.test",), "OIDC_ISSUER": "https://login.example.test",
                         "IMAP_SERVER": ("imaps", "mail.example.test", 993, False),
                         "SUBMISSION_SERVER": ("smtp", "mail.example.test", 587, True)}


@pytest.mark.parametrize("path", ["/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=ann%40Example.test",
                                  "/mail/config-v1.1.xml?emailaddress=ann%40example.test"])
def test_autoconfig_names_the_servers_oauth2_first_and_this_issuer(client: Client, mail_settings: None, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200 and answer["Content-Type"].startswith("application/xml")
    root = ET.fromstring(answer.content)
    incoming, outgoing = root.find("emailProvider/incomingServer"), root.find("emailProvider/outgoingServer")
    assert (incoming.get("type"), incoming.findtext("hostname"), incoming.findtext("port"),
            incoming.findtext("socketType")) == ("imap", "mail.example.test", "993", "SSL")
    assert (outgoing.get("type"), outgoing.findtext("port"), outgoing.findtext("socketType")) == ("smtp", "587", "STARTTLS")
    assert [a.text for a in incoming.findall("authentication")] == ["OAuth2", "password-cleartext"]
    assert incoming.findtext("username") == "%EMAILADDRESS%"
    assert root.findtext("oAuth2/issuer") == "https://login.example.test"
    assert root.findtext("oAuth2/scope") == "openid mail offline_access"
    assert root.findtext("oAuth2/authURL") == "https://login.example.test/oidc/authorize/"


def test_autoconfig_is_only_for_the_configured_domains(client: Client, mail_settings: None) -> None:
    assert client.get("/mail/config-v1.1.xml?emailaddress=ann%40elsewhere.test").status_code == 404
    assert client.get("/mail/config-v1.1.xml?emailaddress=%3Cscript%3E").status_code == 404


def test_the_thunderbird_manifest_names_our_public_client_scopes_and_endpoints() -> None:
    manifest = json.loads((ROOT / "deploy" / "mail-clients" / "thunderbird" / "manifest.json").read_text())
    provider = manifest["oauth_provider"]
    assert provider["clientId"] == discovery.CLIENT_ID and provider["scopes"] == discovery.SCOPES
    assert provider["usePKCE"] is True and provider["authorizationEndpoint"].endswith("/oidc/authorize/")
    assert provider["tokenEndpoint"].endswith("/oidc/token/") and provider["redirectionEndpoint"] == "http://127.0.0.1/callback"


@pytest.mark.django_db
def test_an_apple_profile_carries_the_app_password_just_shown(user: Any, mail_settings: None,
                                                            django_user_model: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    assert login(browser, user.email, PASSWORD).status_code == 302
    page = browser.post("/account/app-passwords/", {"csrfmiddlewaretoken": csrf_from(browser), "action": "create",
                                                    "name": "iPhone", "scope": "mail"})
    password = re.search(rb'id="app-password-value">([^<]+)<', page.content).group(1).decode()
    public_id = re.search(rb'/account/app-passwords/([^/"]+)/mobileconfig', page.content).group(1).decode()
    url = f"/account/app-passwords/{public_id}/mobileconfig"
    answer = browser.post(url, {"csrfmiddlewaretoken": csrf_from(browser), "password": password})
    assert answer.status_code == 200 and answer["Content-Type"] == "application/x-apple-aspen-config"
    assert "attachment" in answer["Content-Disposition"] and answer["Cache-Control"].startswith("max-age=0")
    [account] = plistlib.loads(answer.content)["PayloadContent"]
    assert (account["EmailAddress"], account["IncomingMailServerHostName"], account["IncomingMailServerPortNumber"],
            account["IncomingPassword"], account["OutgoingMailServerUseSSL"]) == (
        user.email, "mail.example.test", 993, password, True)
    wrong = browser.post(url, {"csrfmiddlewaretoken": csrf_from(browser), "password": "abcd-efgh-jkmn-pqrs-tuvw"})
    assert wrong.status_code == 404
    other = Client(enforce_csrf_checks=True)
    django_user_model.objects.create_user("bob@example.test", PASSWORD)
    assert login(other, "bob@example.test", PASSWORD).status_code == 302
    assert other.post(url, {"csrfmiddlewaretoken": csrf_from(other), "password": password}).status_code == 404
    assert browser.post(url, {"password": password}).status_code == 403  # CSRF


@pytest.mark.parametrize("raw, problem", [("pop3://mail.example.test", "must be like"),
                                          ("imaps://user:pw@mail.example.test", "no credentials"),
                                          ("imap://mail.example.test/path", "must be like")])
def test_a_bad_server_setting_is_one_message(raw: str, problem: str) -> None:
    from loginsvc import conf

    with pytest.raises(ValueError, match=problem):
        conf.mail_server(raw)
