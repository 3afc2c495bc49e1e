"""Mail clients as OAuth clients in the tests: the public `mail-client` product with loopback redirects, and the
code flow a mail client runs (RFC 8252: the system browser, a loopback redirect on any port, PKCE)."""
from __future__ import annotations

import html
import re
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.sso.conftest import pkce

CLIENT_ID = "mail-client"
REDIRECT_URIS = "http://127.0.0.1/callback http://[::1]/callback"
REGISTER = f"""
from oauth2_provider.models import Application
Application.objects.create(client_id={CLIENT_ID!r}, name="Mail app", client_secret="", client_type="public",
    authorization_grant_type="authorization-code", redirect_uris={REDIRECT_URIS!r}, skip_authorization=False,
    algorithm="RS256")
"""


def register() -> Any:
    """The public product of native mail clients, as `make up` registers it."""
    namespace: dict[str, Any] = {}
    exec(REGISTER, namespace)  # noqa: S102 - the same statement the tests run in a node's shell
    from oauth2_provider.models import Application

    return Application.objects.get(client_id=CLIENT_ID)


def code_flow(get: Callable[[str], Any], post: Callable[[str, dict[str, str]], Any],
              scope: str = "openid mail offline_access", port: int = 53682) -> tuple[str, str, str]:
    """(code, verifier, redirect_uri) after a signed-in browser allowed the mail client (the consent page)."""
    verifier, challenge = pkce()
    redirect_uri = f"http://127.0.0.1:{port}/callback"
    query = urlencode({"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": redirect_uri, "scope": scope,
                       "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256"})
    answer = get("/oidc/authorize/?" + query)
    if answer.status_code == 200:  # consent, unless this browser allowed the same scopes before ("auto")
        assert b"Allow Mail app" in answer.content, answer.content[:300]
        hidden = re.findall(rb'<input type="hidden" name="([^"]+)" value="([^"]*)"', answer.content)
        fields = {html.unescape(n.decode()): html.unescape(v.decode()) for n, v in hidden}  # the CSRF token too
        fields["allow"] = "Authorize"
        answer = post("/oidc/authorize/?" + query, fields)
    assert answer.status_code == 302, answer.content[:300]
    location = answer.headers["Location"]
    assert location.startswith(redirect_uri + "?"), location
    return parse_qs(urlsplit(location).query)["code"][0], verifier, redirect_uri


def token_form(code: str, verifier: str, redirect_uri: str) -> dict[str, str]:
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "client_id": CLIENT_ID,
            "code_verifier": verifier}
