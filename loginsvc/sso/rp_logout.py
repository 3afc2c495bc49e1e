"""OpenID Connect RP-Initiated Logout 1.0: the toolkit's end-session endpoint with the central session's rules.

- The hint (§2 `id_token_hint`) is read here, not by the toolkit: signed by a published key of our
  ring (by `kid`), `iss` ours, `aud` a registered product, `sub` a user. It may have expired: §2 says
  the OP SHOULD accept an expired hint, and a product usually holds the ID token of its sign-in,
  long expired when the user signs out. The IDToken row is not needed either (logout deletes a
  session's ID tokens); the claims carry `sub`, `sid` and `aud`.
- What ends: a hint of the caller's own current session ends it with no question, with every
  product's sign-in. Any other hint (another session, another user, nobody signed in here) shows
  the confirmation page; once confirmed, the caller's own session ends, and of the hint's session
  every sign-in when the caller is its user, otherwise only the hinting product's sign-in. An ID
  token is a bearer value that products, logs and browsers see: holding one must not sign its user
  out of every product.
- §2: the OP MUST accept POST. A product's POSTed request cannot carry our CSRF token and is
  handled exactly as the same GET; the confirmation page's answer is CSRF-checked.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from django.contrib import auth
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from jwcrypto import jwt
from jwcrypto.common import JWException
from oauth2_provider import views as toolkit
from oauth2_provider.exceptions import (
    ClientIdMissmatch, InvalidIDTokenError, InvalidOIDCClientError, InvalidOIDCRedirectURIError,
)
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.models import get_application_model
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import add_params_to_uri

from loginsvc import conf
from loginsvc.accounts.client_ip import client_ip
from loginsvc.sso import audit, central, keys, logout

MAX_HINT_CHARS = 8192        # our ID tokens are about 1 KiB; no reason to parse more
CLOCK_SKEW_SECONDS = 60      # an `iat` this far in the future is still accepted (nodes' clocks)
CONFIRMATION = "confirmation"  # hidden field of the confirmation page (sso/logout_confirm.html)


@dataclass(frozen=True)
class Hint:
    """What a verified id_token_hint names: the user, the product it was issued to, the session."""

    user: Any
    application: Any
    sid: str | None


def max_hint_age() -> int:
    """Seconds after its `iat` that a hint is still accepted.

    A hint is a key to a sign-out, so it must not work forever. Nothing of its session can outlive
    this: the session ends at most SESSION_MAX_SECONDS after its login, which is no later than the
    hint's `iat`; a refresh is refused from then on, and the last access token dies one token
    lifetime later. An older hint has nothing left to end."""
    return conf.get("SESSION_MAX_SECONDS") + conf.get("ACCESS_TOKEN_SECONDS")


def read_hint(raw: str, issuer: str) -> Hint:
    """The verified hint; InvalidIDTokenError for anything we did not sign or cannot bind."""
    if len(raw) > MAX_HINT_CHARS:
        raise InvalidIDTokenError()
    try:
        token = jwt.JWT(jwt=raw, algs=[keys.ALGORITHM], expected_type="JWS", strict_serialization=True,
                        check_claims={"iss": issuer, "sub": None, "aud": None, "iat": None})
        header = token.token.jose_header
        key = keys.ring().by_kid(header.get("kid") if isinstance(header, dict) else None)
        if key is None:
            raise InvalidIDTokenError()
        token.validate(key.private)     # signature, then iss, and the types of the registered claims
        claims = json.loads(token.claims)
    except (JWException, ValueError, TypeError, KeyError):
        raise InvalidIDTokenError() from None
    age = time.time() - claims["iat"]
    if age > max_hint_age() or age < -CLOCK_SKEW_SECONDS:
        raise InvalidIDTokenError("The ID Token was issued longer ago than a session can live, or in the future.")
    audience, sid = claims["aud"], claims.get("sid")
    if isinstance(audience, list) and len(audience) == 1:
        audience = audience[0]
    application = get_application_model().objects.filter(client_id=audience).first() \
        if isinstance(audience, str) else None
    if application is None or not (sid is None or isinstance(sid, str)):
        raise InvalidIDTokenError()
    return Hint(_user(claims["sub"]), application, sid)


def _user(sub: str) -> Any:
    """The hint's user: a deleted user has nothing left to end (their sign-ins went with them)."""
    users = auth.get_user_model()
    try:
        user = users.objects.filter(pk=users._meta.pk.to_python(sub)).first()
    except ValidationError:
        user = None
    if user is None or str(user.pk) != sub:    # sub as we write it, not " 1" or a full-width digit
        raise InvalidIDTokenError()
    return user


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and secrets.compare_digest(a.encode(), b.encode())


@method_decorator(csrf_exempt, name="dispatch")
class LogoutView(toolkit.RPInitiatedLogoutView):
    """OpenID Connect RP-Initiated Logout 1.0: what ends depends on whose session the hint names."""

    template_name = "sso/logout_confirm.html"
    hint: Hint | None = None

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """§2: a product's POST is its logout request; the confirmation page's answer needs our CSRF token.

        The product's request is CSRF-exempt because it changes nothing a GET link could not: without
        a confirmation it only ends the caller's own session, named by a hint of that very session."""
        if CONFIRMATION in request.POST or "allow" in request.POST:
            return csrf_protect(super().post)(request, *args, **kwargs)
        request.GET = request.POST      # the toolkit's get() reads the request from the query string
        return self.get(request, *args, **kwargs)

    def validate_logout_request_user(self, id_token_hint: str | None, client_id: str | None) -> Hint | None:
        if not id_token_hint:
            return None
        hint = read_hint(id_token_hint, oauth2_settings.oidc_issuer(self.request))
        if client_id and hint.application.client_id != client_id:
            raise ClientIdMissmatch()
        self.hint = hint
        return hint

    def get_request_application(self, hint: Hint | None, client_id: str | None) -> Any:
        """An unknown client_id is an error page (the toolkit's .get() raised DoesNotExist: a 500)."""
        if client_id:
            application = get_application_model().objects.filter(client_id=client_id).first()
            if application is None:
                raise InvalidOIDCClientError()
            return application
        return hint.application if hint else None

    def validate_post_logout_redirect_uri(self, application: Any, post_logout_redirect_uri: str | None) -> None:
        """§3: exactly a registered URI (the toolkit compares the host case-insensitively)."""
        super().validate_post_logout_redirect_uri(application, post_logout_redirect_uri)
        if post_logout_redirect_uri and post_logout_redirect_uri not in application.post_logout_redirect_uris.split():
            raise InvalidOIDCRedirectURIError("This client does not have this redirect uri registered.")

    def error_response(self, error: Any) -> HttpResponse:
        audit.refused(self.request, "logout", getattr(error, "error", None) or "invalid_request",
                      reason=type(error).__name__)
        return super().error_response(error)

    def _hint_users(self) -> bool:
        """The caller is signed in as the hint's user (in this session or another)."""
        user = self.request.user
        return self.hint is not None and user.is_authenticated and user.pk == self.hint.user.pk

    def _hint_is_this_session(self) -> bool:
        """The only case that needs no question (§2): the hint names the caller's current session."""
        hint = self.hint
        return hint is not None and self._hint_users() and _same(hint.sid, central.current_sid(self.request))

    def must_prompt(self, token_user: Any) -> bool:
        """§2: the OP MUST ask when the hint is not of the current session, and we ask a caller who is
        signed out too: the hint alone does not show that they are its user."""
        if super().must_prompt(token_user):
            return True
        return self.hint is not None and not self._hint_is_this_session()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        """The page says what confirming ends of the hint's session: all of it, or one product's sign-in."""
        context = super().get_context_data(**kwargs)
        if self.hint is not None and not self._hint_is_this_session():
            context["hint_ends"] = "session" if self._hint_users() else "product"
            context["hint_product"] = self.hint.application
        return context

    def do_logout(self, application: Any = None, post_logout_redirect_uri: str | None = None,
                  state: str | None = None, token_user: Any = None) -> HttpResponse:
        """End this session (sso/logout.py revokes exactly its tokens on user_logged_out) and what the
        confirmed hint may end of its own session.

        Not the toolkit's do_logout: with DELETE_TOKENS it deletes every token of the user, so
        signing out in one browser signed the user's other browsers out of every product too."""
        hint = self.hint
        if hint is not None and hint.sid and not self._hint_is_this_session():
            # Confirmed (must_prompt): its session may be gone (expired, signed out elsewhere) or live on.
            only = None if self._hint_users() else hint.application
            logout.end_sign_ins_at(hint.user, hint.sid, only, ip=client_ip(self.request),
                                   by="rp-logout" if only is None else "rp-logout:product")
        auth.logout(self.request)
        if not post_logout_redirect_uri:
            return HttpResponseRedirect("/")
        if state:
            post_logout_redirect_uri = add_params_to_uri(post_logout_redirect_uri, [("state", state)])
        return OAuth2ResponseRedirect(post_logout_redirect_uri, application.get_allowed_schemes())
