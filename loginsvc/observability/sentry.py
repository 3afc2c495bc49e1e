"""Sentry set-up from SENTRY_DSN, with cluster/node/release tags and nothing secret in any event."""
from __future__ import annotations

from typing import Any

SCRUBBED_KEYS = [
    "loginsvc_sid", "csrftoken", "__Host-loginsvc_sid", "__Host-csrftoken",  # production names: __Host-
    "loginsvc_device", "__Host-loginsvc_device",
    "csrfmiddlewaretoken", "x-csrftoken", "canary_pin",
    "demo_password", "django_superuser_password", "secret_key",
    # single sign-on (loginsvc/sso): codes, verifiers, tokens, hints, client secrets, signing keys
    "code", "code_verifier", "access_token", "refresh_token", "id_token", "id_token_hint", "logout_token",
    "token", "client_secret", "demo_client_secret", "private_key_pem", "loginsvc_oidc_private_key",
]
_FILTERED = "[Filtered]"


def _strip_request(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Drop what a request can carry that is secret: body, cookies, auth header, query string."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        if request.get("query_string"):
            request["query_string"] = _FILTERED
        headers = request.get("headers")
        if isinstance(headers, dict):
            for name in list(headers):
                if name.lower() in {"cookie", "authorization", "x-csrftoken", "proxy-authorization"}:
                    headers[name] = _FILTERED
    return event


def _drop_revealing_breadcrumbs(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Cache and Redis breadcrumbs name keys that contain session ids; SQL parameters hold values."""
    if crumb.get("category") in {"redis", "cache"} or crumb.get("type") == "redis":
        return None
    if crumb.get("category") == "query" and isinstance(crumb.get("data"), dict):
        crumb["data"].pop("db.params", None)
    return crumb


def init(dsn: str, cluster: str, node: str, release: str, environment: str) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.redis import RedisIntegration
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    sentry_sdk.init(
        dsn=dsn,
        release=release,
        environment=environment,
        server_name=node,
        max_request_body_size="never",
        include_local_variables=False,  # a frame's locals may hold the password being checked
        event_scrubber=EventScrubber(denylist=DEFAULT_DENYLIST + SCRUBBED_KEYS, recursive=True),
        before_send=_strip_request,
        before_breadcrumb=_drop_revealing_breadcrumbs,
        disabled_integrations=[RedisIntegration()],
        traces_sample_rate=0.0,
    )
    sentry_sdk.set_tag("cluster", cluster)
    sentry_sdk.set_tag("node", node)
