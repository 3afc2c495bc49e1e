"""Refused OAuth and OpenID Connect requests, and devices allowed or refused, as structured log lines, never with a secret in them.

Logged: the endpoint, the OAuth error code, the client id (public), the grant type and the client
address. Never: codes, tokens, code verifiers, client secrets, ID token hints.
"""
from __future__ import annotations

import logging

from django.http import HttpRequest

from loginsvc.accounts.client_ip import client_ip

log = logging.getLogger("loginsvc.audit")


def _clean(value: object) -> str:
    """A client-supplied value fit for one log field: printable ASCII, at most 80 characters."""
    text = str(value or "")[:80]
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


def refused(request: HttpRequest, endpoint: str, error: str, client_id: object = None, **extra: object) -> None:
    log.info("sso: refused", extra={"endpoint": endpoint, "error": _clean(error),
                                    "client_id": _clean(client_id or request.GET.get("client_id")),
                                    "client_ip": client_ip(request),
                                    **{key: _clean(value) for key, value in extra.items()}})


def logged_out(user_id: object, products: int, by: str, ip: str | None) -> None:
    log.info("sso: session ended", extra={"user_id": user_id, "products": products, "by": by, "client_ip": ip})


def retried(request: HttpRequest, client_id: str) -> None:
    """A refresh answered again for the same client's retry (sso/refresh_retry.py): not a refusal, but
    worth seeing when a product retries often."""
    log.info("sso: refresh retry answered", extra={"endpoint": "token", "client_id": _clean(client_id),
                                                    "client_ip": client_ip(request)})


def device_decided(request: HttpRequest, client_id: str, allowed: bool) -> None:
    """A person allowed or refused a device's sign-in at /device (RFC 8628): who, for which client, from where."""
    log.info("sso: device allowed" if allowed else "sso: device refused",
             extra={"user_id": request.user.pk, "client_id": _clean(client_id), "client_ip": client_ip(request)})
