"""How mail clients find their settings: Thunderbird's autoconfig document, and Apple configuration profiles.

Autoconfig (Thunderbird's `config-v1.1.xml`, which draft-ietf-mailmaint-autoconfig describes): the IMAP
and submission servers of a configured mail domain (LOGINSVC_MAIL_DOMAINS, LOGINSVC_IMAP_SERVER,
LOGINSVC_SUBMISSION_SERVER), offering OAuth2 first and the app password second, with an `oAuth2`
element that names this issuer, the `mail` scopes and the endpoints. draft-ietf-mailmaint-oauth-public
adds dynamic client registration; we do not offer it (a client would register itself without
anyone's review), so clients use the registered public client `mail-client` (docs/mail-clients.md).

An Apple configuration profile (`.mobileconfig`) carries one app password to Apple Mail. It is made
when the person asks, from the password they were just shown, and never stored.
"""
from __future__ import annotations

import plistlib
import uuid
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from loginsvc import conf

CLIENT_ID = "mail-client"
SCOPES = "openid mail offline_access"
SOCKET = {("imap", False): "plain", ("imap", True): "STARTTLS", ("imaps", False): "SSL",
          ("smtp", False): "plain", ("smtp", True): "STARTTLS", ("smtps", False): "SSL"}


def _server(kind: str, tag: str, value: tuple[str, str, int, bool]) -> str:
    scheme, host, port, starttls = value
    return (f'    <{tag} type="{kind}">\n'
            f"      <hostname>{escape(host)}</hostname>\n      <port>{port}</port>\n"
            f"      <socketType>{SOCKET[scheme, starttls]}</socketType>\n"
            "      <username>%EMAILADDRESS%</username>\n"
            "      <authentication>OAuth2</authentication>\n"
            "      <authentication>password-cleartext</authentication>\n"
            f"    </{tag}>\n")


def autoconfig(domain: str) -> str | None:
    """The autoconfig document of `domain`, or None when it is not one of ours."""
    domain = domain.strip().lower().rstrip(".")
    if domain not in conf.get("MAIL_DOMAINS"):
        return None
    issuer = conf.get("OIDC_ISSUER")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<clientConfig version="1.1">\n'
            f"  <emailProvider id={quoteattr(domain)}>\n    <domain>{escape(domain)}</domain>\n"
            f"    <displayName>{escape(domain)}</displayName>\n"
            + _server("imap", "incomingServer", conf.get("IMAP_SERVER"))
            + _server("smtp", "outgoingServer", conf.get("SUBMISSION_SERVER"))
            + "  </emailProvider>\n  <oAuth2>\n"
            f"    <issuer>{escape(issuer)}</issuer>\n    <scope>{SCOPES}</scope>\n"
            f"    <authURL>{escape(issuer)}/oidc/authorize/</authURL>\n"
            f"    <tokenURL>{escape(issuer)}/oidc/token/</tokenURL>\n"
            "  </oAuth2>\n</clientConfig>\n")


def _payload(kind: str, user: Any, password: str, server: tuple[str, str, int, bool]) -> dict[str, Any]:
    scheme, host, port, starttls = server
    secure = scheme.endswith("s") or starttls
    return {f"{kind}MailServerHostName": host, f"{kind}MailServerPortNumber": port,
            f"{kind}MailServerUseSSL": secure, f"{kind}MailServerUsername": user.email,
            f"{kind}MailServerAuthentication": "EmailAuthPassword", f"{kind}Password": password}


def mobileconfig(user: Any, name: str, password: str) -> bytes:
    """An Apple configuration profile for one app password (IMAP and SMTP submission, the account's address)."""
    host = conf.public_host({"OIDC_ISSUER": conf.get("OIDC_ISSUER")})
    account = {"PayloadType": "com.apple.mail.managed", "PayloadVersion": 1,
               "PayloadIdentifier": f"{host}.mail.{uuid.uuid4()}", "PayloadUUID": str(uuid.uuid4()),
               "PayloadDisplayName": name, "EmailAccountDescription": f"{user.email} ({name})",
               "EmailAccountType": "EmailTypeIMAP", "EmailAddress": user.email,
               **_payload("Incoming", user, password, conf.get("IMAP_SERVER")),
               **_payload("Outgoing", user, password, conf.get("SUBMISSION_SERVER"))}
    profile = {"PayloadType": "Configuration", "PayloadVersion": 1, "PayloadContent": [account],
               "PayloadIdentifier": f"{host}.mail-profile.{uuid.uuid4()}", "PayloadUUID": str(uuid.uuid4()),
               "PayloadDisplayName": f"Mail for {user.email}", "PayloadRemovalDisallowed": False}
    return plistlib.dumps(profile)


def check_servers(app_configs: object = None, **kwargs: object) -> list:
    """`manage.py check --deploy`: in production, mail clients must be told to use TLS (their app
    password crosses the network) and a server they can reach (not this machine's loopback)."""
    from django.conf import settings
    from django.core import checks

    if not settings.PRODUCTION:
        return []
    found = []
    for key in ("IMAP_SERVER", "SUBMISSION_SERVER"):
        scheme, host, _port, starttls = conf.get(key)
        if host in ("127.0.0.1", "::1", "localhost") or not (scheme.endswith("s") or starttls):
            found.append(checks.Warning(
                f"LOGINSVC_{key}: mail clients would be told {scheme}://{host} without TLS or on loopback",
                hint="Set it to your mail server with TLS, e.g. imaps://mail.example.com (docs/mail-clients.md).",
                id="loginsvc.W040"))
    return found
