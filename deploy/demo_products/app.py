"""The demo products' WSGI app: each product signs in with the authorization code flow through Authlib."""
from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlencode

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from deploy.demo_products import PRODUCTS, pages
from deploy.demo_products.backchannel import handle_logout_token
from deploy.demo_products.provider import HTTP_TIMEOUT, Provider, ProviderUnavailable, TokenRejected
from deploy.demo_products.sessions import Session, SessionStore

log = logging.getLogger("demo_products")

SCOPE = "openid email profile"
PROMPTS = {"none", "login", "consent", "select_account"}
MAX_BODY = 16 * 1024              # the only bodies here are a logout form and a logout token
FORM = "application/x-www-form-urlencoded"

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Response = tuple[int, list[tuple[str, str]], bytes]
STATUS = {200: "200 OK", 302: "302 Found", 303: "303 See Other", 400: "400 Bad Request", 404: "404 Not Found",
          405: "405 Method Not Allowed", 413: "413 Payload Too Large", 415: "415 Unsupported Media Type",
          502: "502 Bad Gateway", 503: "503 Service Unavailable"}


class BadRequest(Exception):
    """A request this app refuses: (status, page title, message shown to the person)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


@dataclass
class Request:
    method: str
    path: str
    host: str
    query: dict[str, str]
    cookies: dict[str, str]
    environ: dict[str, Any] = field(repr=False)

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> "Request":
        raw_path = environ.get("PATH_INFO", "") or "/"
        return cls(environ.get("REQUEST_METHOD", "GET").upper(), raw_path, environ.get("HTTP_HOST", ""),
                   dict(parse_qsl(environ.get("QUERY_STRING", ""), max_num_fields=50)),
                   parse_cookies(environ.get("HTTP_COOKIE", "")), environ)

    def form(self) -> dict[str, str]:
        if self.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != FORM:
            raise BadRequest(415, "Unsupported request", f"expected {FORM}")
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise BadRequest(400, "Bad request", "Content-Length is not a number") from None
        if length > MAX_BODY:
            raise BadRequest(413, "Too large", f"the body may be at most {MAX_BODY} bytes")
        body = self.environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            return dict(parse_qsl(body.decode("ascii"), max_num_fields=20, strict_parsing=False))
        except (UnicodeDecodeError, ValueError):
            raise BadRequest(400, "Bad request", "the form is not URL-encoded ASCII") from None


def parse_cookies(header: str) -> dict[str, str]:
    """Lenient on purpose: one malformed cookie from elsewhere on 127.0.0.1 must not hide ours."""
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies


def cookie_name(client_id: str) -> str:
    return f"demo_{client_id}"


def session_cookie(client_id: str, value: str, max_age: int | None = None) -> tuple[str, str]:
    extra = f"; Max-Age={max_age}" if max_age is not None else ""
    return ("Set-Cookie", f"{cookie_name(client_id)}={value}; Path=/{client_id}/; HttpOnly; SameSite=Lax{extra}")


def redirect(location: str, status: int = 302, *headers: tuple[str, str]) -> Response:
    return status, [("Location", location), *headers], b""


class DemoProducts:
    """The WSGI callable: routing, then one plain function per endpoint."""

    def __init__(self, issuer: str, public_url: str, client_secret: str, store: SessionStore | None = None) -> None:
        self.provider = Provider(issuer)
        self.public_url = public_url.rstrip("/")
        self._secret = client_secret
        self.store = store or SessionStore()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request.from_environ(environ)
        try:
            status, headers, body = self.route(request)
        except BadRequest as exc:
            status, headers, body = exc.status, pages.HTML, pages.error(exc.title, exc.message, request.path)
        except ProviderUnavailable as exc:
            log.warning("login service unavailable: %s", exc)
            status, headers, body = 503, [*pages.HTML, ("Retry-After", "2")], pages.error(
                "Login service unavailable", "The login service is not reachable right now; try again shortly.",
                request.path)
        except Exception:  # noqa: BLE001 - a demo page, not a traceback, whatever went wrong
            log.exception("unexpected error on %s %s", request.method, request.path)
            status, headers, body = 502, pages.HTML, pages.error("Something went wrong", "Try again.", request.path)
        start_response(STATUS.get(status, f"{status} Error"),
                       [*headers, *pages.SECURITY_HEADERS, ("Content-Length", str(len(body)))])
        return [body]

    def route(self, request: Request) -> Response:
        if request.path == "/":
            return self.only(request, "GET") or (200, pages.HTML, pages.index())
        if request.path == "/healthz":
            return self.only(request, "GET") or (200, [("Content-Type", "text/plain")], b"ok\n")
        client_id, _, action = request.path.strip("/").partition("/")
        if client_id not in PRODUCTS or not request.path.startswith(f"/{client_id}/"):
            if client_id in PRODUCTS and request.path == f"/{client_id}":
                return redirect(f"/{client_id}/")
            raise BadRequest(404, "Not found", "No such page.")
        endpoints: dict[str, tuple[str, Callable[[Request, str], Response]]] = {
            "": ("GET", self.product_page), "login": ("GET", self.login), "callback": ("GET", self.callback),
            "logout": ("POST", self.logout), "backchannel-logout": ("POST", self.backchannel_logout),
        }
        if action not in endpoints:
            raise BadRequest(404, "Not found", "No such page.")
        method, handler = endpoints[action]
        return self.only(request, method) or handler(request, client_id)

    @staticmethod
    def only(request: Request, method: str) -> Response | None:
        if request.method == method:
            return None
        return 405, [*pages.HTML, ("Allow", method)], pages.error(
            "Method not allowed", f"Use {method}.", request.path)

    def session(self, request: Request, client_id: str) -> Session | None:
        return self.store.get(client_id, request.cookies.get(cookie_name(client_id)))

    def oauth(self, client_id: str, **kwargs: Any) -> OAuth2Session:
        return OAuth2Session(client_id, self._secret, scope=SCOPE, code_challenge_method="S256",
                             token_endpoint_auth_method="client_secret_basic",
                             redirect_uri=f"{self.public_url}/{client_id}/callback", **kwargs)

    # -- pages ---------------------------------------------------------------------------------------------
    def product_page(self, request: Request, client_id: str) -> Response:
        session = self.session(request, client_id)
        user = session.user if session else None
        signed_out = request.query.get("state", "") != "" and user is None
        return 200, pages.HTML, pages.product(client_id, user, session.csrf if session else "", signed_out)

    def login(self, request: Request, client_id: str) -> Response:
        """Authorization request: code flow, PKCE S256, state and nonce kept server-side for the callback."""
        canonical = self.public_url.split("://", 1)[1]
        if request.host and request.host != canonical:  # cookies are per host: stay on the registered one
            return redirect(f"{self.public_url}/{client_id}/login?{urlencode(request.query)}")
        authorize = self.provider.metadata()["authorization_endpoint"]
        session = self.session(request, client_id)
        headers = []
        if session is None:
            session = self.store.create(client_id)
            headers.append(session_cookie(client_id, session.key))
        extra = {}
        if request.query.get("prompt") in PROMPTS:
            extra["prompt"] = request.query["prompt"]
        nonce, code_verifier = generate_token(32), generate_token(64)
        url, state = self.oauth(client_id).create_authorization_url(authorize, code_verifier=code_verifier,
                                                                    nonce=nonce, **extra)
        self.store.add_pending(session, state, nonce, code_verifier)
        return redirect(url, 302, *headers)

    def callback(self, request: Request, client_id: str) -> Response:
        """The provider's answer: state, code exchange, ID token validation, userinfo, a new session."""
        session = self.session(request, client_id)
        pending = self.store.take_pending(session, request.query.get("state", ""))
        self.check_response_issuer(request)
        if "error" in request.query:
            error = request.query["error"][:100]
            log.info("%s: the login service answered error=%s", client_id, error)
            raise BadRequest(400, "Sign-in did not complete",
                             f"The login service answered: {error}"
                             + (f" ({request.query['error_description'][:300]})"
                                if request.query.get("error_description") else ""))
        if session is None or pending is None:
            raise BadRequest(400, "Sign-in expired", "This sign-in is unknown or expired (state); start again.")
        code = request.query.get("code", "")
        if not code:
            raise BadRequest(400, "Sign-in did not complete", "The login service sent no authorization code.")
        user = self.complete_sign_in(client_id, code, pending.code_verifier, pending.nonce)
        signed_in = self.store.sign_in(session, user)
        log.info("%s: signed in sub=%s sid=%s", client_id, user["sub"], user.get("sid"))
        return redirect(f"/{client_id}/", 302, session_cookie(client_id, signed_in.key))

    def check_response_issuer(self, request: Request) -> None:
        """RFC 9207: the answer must come from our issuer (an authorization server mix-up otherwise)."""
        iss = request.query.get("iss")
        if iss is None and self.provider.cached_metadata().get("authorization_response_iss_parameter_supported"):
            raise BadRequest(400, "Sign-in failed", "The answer names no issuer (iss), which this provider sends.")
        if iss is not None and iss != self.provider.issuer:
            raise BadRequest(400, "Sign-in failed", "The answer comes from another issuer (iss); start again.")

    def complete_sign_in(self, client_id: str, code: str, code_verifier: str, nonce: str) -> dict[str, Any]:
        metadata = self.provider.metadata()
        client = self.oauth(client_id)
        try:
            token = client.fetch_token(metadata["token_endpoint"], grant_type="authorization_code", code=code,
                                       code_verifier=code_verifier, timeout=HTTP_TIMEOUT)
            if "id_token" not in token:
                raise BadRequest(400, "Sign-in failed", "The token response holds no ID token.")
            claims = self.provider.validate_id_token(token["id_token"], client_id, nonce, token["access_token"])
            response = client.get(metadata["userinfo_endpoint"], timeout=HTTP_TIMEOUT)
        except OAuthError as exc:
            log.info("%s: token request refused: %s", client_id, exc.error)
            raise BadRequest(400, "Sign-in failed", f"The login service refused the code: {exc.error}") from None
        except TokenRejected as exc:
            log.warning("%s: ID token rejected: %s", client_id, exc)
            raise BadRequest(400, "Sign-in failed", f"The ID token was rejected: {exc}") from None
        except requests.RequestException as exc:
            log.warning("%s: token or userinfo request failed: %s", client_id, exc.__class__.__name__)
            raise BadRequest(502, "Login service unavailable", "The login service did not answer; try again.") from None
        finally:
            client.close()
        try:
            info = response.json() if response.status_code == 200 else None
        except ValueError:
            info = None
        if not isinstance(info, dict) or info.get("sub") != claims["sub"]:  # OpenID Connect Core §5.3.2
            raise BadRequest(502, "Sign-in failed", f"Userinfo answered HTTP {response.status_code} or another sub.")
        return {"sub": claims["sub"], "sid": claims.get("sid"), "email": info.get("email") or claims.get("email", ""),
                "name": info.get("name") or claims.get("name", ""), "id_token": token["id_token"],
                "tokens": {k: token[k] for k in ("access_token", "refresh_token", "expires_at", "token_type")
                           if k in token}}

    def logout(self, request: Request, client_id: str) -> Response:
        """RP-initiated logout: this product's session first, then the provider's end-session endpoint."""
        form = request.form()
        session = self.session(request, client_id)
        gone = session_cookie(client_id, "", max_age=0)
        if session is None or session.user is None:  # nothing to end here (e.g. a back-channel logout did)
            return redirect(f"/{client_id}/", 303, gone)
        if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
            raise BadRequest(400, "Sign-out refused", "The form is stale or forged (CSRF); reload the page.")
        self.store.end(session)
        log.info("%s: signed out sub=%s sid=%s", client_id, session.user["sub"], session.user.get("sid"))
        end_session = self.provider.endpoint("end_session_endpoint")
        if not end_session:
            return redirect(f"/{client_id}/", 303, gone)
        params = {"client_id": client_id, "post_logout_redirect_uri": f"{self.public_url}/{client_id}/",
                  "state": secrets.token_urlsafe(16)}
        hint = self.id_token_hint(client_id, session.user)
        if hint:
            params = {"id_token_hint": hint, **params}
        return redirect(f"{end_session}{'&' if '?' in end_session else '?'}{urlencode(params)}", 303, gone)

    def id_token_hint(self, client_id: str, user: dict[str, Any]) -> str | None:
        """The session's ID token, or a fresh one from its refresh token once it has expired (the
        provider refuses expired hints); None when neither works: the provider then asks the person."""
        try:
            expires = self.provider.decode(user["id_token"]).claims.get("exp", 0)
        except (TokenRejected, ProviderUnavailable):
            expires = 0
        if isinstance(expires, (int, float)) and expires > time.time() + 30:
            return user["id_token"]
        refresh = user.get("tokens", {}).get("refresh_token")
        if not refresh:
            return None
        client = self.oauth(client_id)
        try:
            token = client.refresh_token(self.provider.metadata()["token_endpoint"], refresh_token=refresh,
                                         timeout=HTTP_TIMEOUT)
            return token.get("id_token") or None
        except (OAuthError, requests.RequestException, ProviderUnavailable, ValueError) as exc:
            log.info("%s: no fresh ID token for the logout hint (%s)", client_id, exc.__class__.__name__)
            return None
        finally:
            client.close()

    def backchannel_logout(self, request: Request, client_id: str) -> Response:
        """§2.8: 200 and no-store when the token is good and acted on; 400 JSON for any bad token."""
        no_store = [("Cache-Control", "no-store")]
        try:
            claims, ended = handle_logout_token(self.provider, self.store, request.form().get("logout_token", ""),
                                                client_id)
        except ProviderUnavailable as exc:  # not the token's fault: the provider's outbox retries later
            log.warning("%s: cannot check a logout token now: %s", client_id, exc)
            body = json.dumps({"error": "temporarily_unavailable", "error_description": str(exc)}).encode()
            return 503, [("Content-Type", "application/json"), ("Retry-After", "5"), *no_store], body
        except (TokenRejected, BadRequest) as exc:
            reason = exc.message if isinstance(exc, BadRequest) else str(exc)
            log.warning("%s: logout token rejected: %s", client_id, reason)
            body = json.dumps({"error": "invalid_request", "error_description": reason}).encode()
            return 400, [("Content-Type", "application/json"), *no_store], body
        log.info("%s: back-channel logout sid=%s sub=%s jti=%s ended %d session(s)", client_id, claims.get("sid"),
                 claims.get("sub"), claims["jti"], ended)
        return 200, [("Content-Type", "text/plain"), *no_store], b""
