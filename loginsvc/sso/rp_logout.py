"""OpenID Connect RP-Initiated Logout 1.0: the toolkit's logout endpoint, ending this session's sign-ins."""
from __future__ import annotations

from typing import Any

from django.contrib import auth
from django.http import HttpResponse, HttpResponseRedirect
from oauth2_provider import views as toolkit
from oauth2_provider.exceptions import (
    ClientIdMissmatch, InvalidIDTokenError, InvalidOIDCClientError, InvalidOIDCRedirectURIError,
)
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.models import get_application_model
from oauth2_provider.views.oidc import _load_id_token, _validate_claims
from oauthlib.common import add_params_to_uri

from loginsvc.accounts.client_ip import client_ip
from loginsvc.sso import audit, central, logout


class LogoutView(toolkit.RPInitiatedLogoutView):
    """OpenID Connect RP-Initiated Logout 1.0, ending this session's sign-ins (not every session's)."""

    template_name = "sso/logout_confirm.html"
    hint_sid: str | None = None

    def validate_logout_request_user(self, id_token_hint: str | None, client_id: str | None) -> Any:
        if not id_token_hint:
            return None
        try:
            id_token, claims = _load_id_token(id_token_hint)
        except (KeyError, TypeError, ValueError):  # validly signed claims without jti, or not an object: a 500
            id_token, claims = None, None
        if not id_token or not _validate_claims(self.request, claims):
            raise InvalidIDTokenError()
        if client_id and id_token.application.client_id != client_id:
            raise ClientIdMissmatch()
        self.hint_sid = claims.get("sid")
        return id_token

    def get_request_application(self, id_token: Any, client_id: str | None) -> Any:
        """An unknown client_id is an error page (the toolkit's .get() raised DoesNotExist: a 500)."""
        if client_id:
            application = get_application_model().objects.filter(client_id=client_id).first()
            if application is None:
                raise InvalidOIDCClientError()
            return application
        return id_token.application if id_token else None

    def validate_post_logout_redirect_uri(self, application: Any, post_logout_redirect_uri: str | None) -> None:
        """§3: exactly a registered URI (the toolkit compares the host case-insensitively)."""
        super().validate_post_logout_redirect_uri(application, post_logout_redirect_uri)
        if post_logout_redirect_uri and post_logout_redirect_uri not in application.post_logout_redirect_uris.split():
            raise InvalidOIDCRedirectURIError("This client does not have this redirect uri registered.")

    def error_response(self, error: Any) -> HttpResponse:
        audit.refused(self.request, "logout", getattr(error, "error", None) or "invalid_request",
                      reason=type(error).__name__)
        return super().error_response(error)

    def must_prompt(self, token_user: Any) -> bool:
        """§2: also ask when the hint belongs to another of this user's sessions."""
        if super().must_prompt(token_user):
            return True
        return self.request.user.is_authenticated and self.hint_sid != central.current_sid(self.request)

    def do_logout(self, application: Any = None, post_logout_redirect_uri: str | None = None,
                  state: str | None = None, token_user: Any = None) -> HttpResponse:
        """End this session; sso/logout.py revokes exactly its tokens (on user_logged_out).

        Not the toolkit's do_logout: with DELETE_TOKENS it deletes every token of the user, so
        signing out in one browser signed the user's other browsers out of every product too."""
        if self.hint_sid and self.hint_sid != central.current_sid(self.request) and token_user is not None:
            # That session is already gone here (expired, or signed out elsewhere): end its sign-ins anyway.
            logout.end_sign_ins(token_user, self.hint_sid, ip=client_ip(self.request))
        auth.logout(self.request)
        if not post_logout_redirect_uri:
            return HttpResponseRedirect("/")
        if state:
            post_logout_redirect_uri = add_params_to_uri(post_logout_redirect_uri, [("state", state)])
        return OAuth2ResponseRedirect(post_logout_redirect_uri, application.get_allowed_schemes())
