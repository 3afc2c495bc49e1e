"""HTTP endpoints of the provider: django-oauth-toolkit's views with the central session's rules added.

- authorize: `prompt=login` and `max_age` send the user through our login page again (the
  toolkit sends an already signed-in user straight back); `prompt=none` never shows a page;
  every code carries the session's sid and auth_time (central.py, validators.py).
- discovery: the toolkit's document plus revocation, introspection and back-channel logout,
  RS256 only, built once per process; JWKS from the key ring (keys.py).
- introspection: only for an authenticated confidential client, and only its own tokens (the mail
  server's client also sees access tokens granted `mail`: introspection.may_see).
- RP-initiated logout lives in sso/rp_logout.py.
- bad input: an authorization request that cannot succeed is refused before any login page; error
  redirects carry `iss`; the token endpoint refuses repeated or oversized parameters, malformed
  code verifiers and grant types we do not offer before the toolkit parses them (it answered 200,
  unauthorized_client or a 500); logout hints and client ids the toolkit crashed on are an error
  page. Every refusal is one audit line (sso/audit.py), never with a secret.
"""
from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import DisallowedRedirect
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from oauth2_provider import views as toolkit
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.models import AccessToken, RefreshToken, get_application_model
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.signals import app_authorized
from oauthlib.common import Request as OAuthRequest

from loginsvc import conf
from loginsvc.accounts.views import oauth_no_store
from loginsvc.mfa import factors, pending
from loginsvc.sso import acr, audit, central, device, introspection, keys
from loginsvc.sso.validators import GrantRefused, Retried, Validator, is_loopback

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")   # RFC 7636 §4.2: BASE64URL(SHA-256), no padding
CODE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1


def _has_nul(request: HttpRequest) -> bool:
    """A NUL in any parameter: PostgreSQL cannot even compare such text (DataError), so refuse first."""
    return any("\x00" in value for data in (request.GET, request.POST) for values in data.lists() for value in values[1])


def refuse_nul(view: Any) -> Any:
    """RFC 6749 §4.1.2.1 / §5.2: invalid_request for a parameter holding NUL, before any database lookup;
    an error page for the browser endpoints, JSON for the back-channel ones. Never a redirect: the
    client and redirect_uri cannot be checked with such input."""
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if _has_nul(request):
            audit.refused(request, request.path_info.strip("/").split("/")[-1] or "sso", "invalid_request")
            body = {"error": "invalid_request", "error_description": "a parameter contains a NUL character"}
            page = {"/authorize/": "sso/authorize.html", "/logout/": "sso/logout_confirm.html"}.get(
                request.path_info[request.path_info.rfind("/", 0, -1):])
            if page is not None:
                error = {"error": body["error"], "description": body["error_description"]}
                return render(request, page, {"error": error}, status=400)
            return oauth_no_store(JsonResponse(body, status=400))
        return view(request, *args, **kwargs)
    return wrapped


def _max_age(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise ValueError("max_age must be a non-negative integer")
    return int(raw)


def authorization_problem(query: Any) -> str | None:
    """Why an authorization request is invalid_request beyond what oauthlib checks, or None.

    Decided from the request alone, so an anonymous browser is refused before any login page."""
    try:
        _max_age(query.get("max_age"))
    except ValueError as exc:
        return str(exc)
    prompt = set(query.get("prompt", "").split())
    if "none" in prompt and len(prompt) > 1:
        return "prompt=none cannot be combined with other values"
    challenge = query.get("code_challenge")
    if challenge and not S256_CHALLENGE.fullmatch(challenge):
        return "code_challenge must be the base64url SHA-256 of the code_verifier (43 characters)"
    return acr.problem(query)


def step_up(request: HttpRequest, back: str) -> HttpResponse:
    """The signed-in user's way to a multi-factor sign-in, then to `back` (a path of ours): the second step's
    page (not the password again), or, without a second factor, the account page to set one up."""
    if factors.methods_of(request.user):
        pending.begin(request, request.user, amr=central.amr(request), counted=False)
        return HttpResponseRedirect(f"{reverse('login-mfa')}?{urlencode({'next': back})}")
    return HttpResponseRedirect(f"{reverse('mfa-account')}?{urlencode({'next': back, 'required': '1'})}")


class AuthorizationView(toolkit.AuthorizationView):
    """OpenID Connect Core §3.1.2: the authorization endpoint, for an already signed-in user."""

    template_name = "sso/authorize.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        problem = authorization_problem(request.GET)
        if problem:
            return self._error_redirect("invalid_request", problem)
        prompt = set(request.GET.get("prompt", "").split())
        max_age = _max_age(request.GET.get("max_age"))
        if "login" in prompt or central.too_old(request, max_age) or central.reauthentication_pending(request):
            if "none" in prompt:
                return self._error_redirect("login_required", "")
            return self._reauthenticate(request)
        if acr.needed(request.GET, request.user) > central.acr_of(central.amr(request)):
            if "none" in prompt:  # §3.1.2.6: the user must interact (the second factor)
                return self._error_redirect("interaction_required", "a second factor is required")
            return self._step_up(request)
        if is_loopback(request.GET.get("redirect_uri", "")):
            # RFC 8252 §8.6: any program on the machine can receive a loopback redirect with a code of its
            # own asking; the person must see and allow each such request (no "auto" approval).
            request.GET = request.GET.copy()
            request.GET["approval_prompt"] = "force"
        response = super().get(request, *args, **kwargs)
        if "none" in prompt and response.status_code == 200:  # would show the consent page
            return self._error_redirect("consent_required", "")
        return response

    def redirect(self, redirect_to: str, application: Any) -> HttpResponse:
        """The toolkit's redirect back to the product, with `http` allowed for a loopback redirect: a native
        app's (RFC 8252 §7.3), which products.py registers even where other redirects must be https."""
        if is_loopback(redirect_to):
            return OAuth2ResponseRedirect(redirect_to, ["https", "http"])
        return super().redirect(redirect_to, application)

    def handle_no_permission(self) -> HttpResponse:
        """Not signed in. RFC 6749 §4.1.2.1: a request that cannot succeed is an error page now, not
        after the user typed a password; `prompt=none` is login_required with `iss` (RFC 9207), which
        the toolkit's own answer lacks."""
        problem = authorization_problem(self.request.GET)
        if problem:
            return self._error_redirect("invalid_request", problem)
        _credentials, page = self._validated()
        if page is not None:
            return page
        if "none" in self.request.GET.get("prompt", "").split():
            return self._error_redirect("login_required", "")
        return super().handle_no_permission()

    def error_response(self, error: OAuthToolkitError, application: Any, **kwargs: Any) -> HttpResponse:
        """Every refusal is logged; an error sent back to the (registered) redirect_uri names the issuer
        (RFC 9207 §2: error responses too; the toolkit adds `iss` to successful ones only)."""
        audit.refused(self.request, "authorize", error.oauthlib_error.error)
        try:
            response = super().error_response(error, application, **kwargs)
        except DisallowedRedirect:
            # oauthlib refused the request before it knew where to send the error (e.g. a claims
            # parameter that is not JSON): the error page, as for an unknown redirect_uri.
            problem = {"error": error.oauthlib_error.error, "description": error.oauthlib_error.description}
            return render(self.request, self.template_name, {"error": problem}, status=400)
        if response.status_code == 302:
            response["Location"] += "&" + urlencode({"iss": oauth2_settings.OIDC_ISS_ENDPOINT})
        return response

    def create_authorization_response(self, request: HttpRequest, scopes: str, credentials: dict, allow: bool) -> Any:
        credentials = dict(credentials, sso_sid=central.sid(request), sso_auth_time=central.auth_time(request),
                           sso_amr=" ".join(central.amr(request)))
        return super().create_authorization_response(request, scopes, credentials, allow)

    def _validated(self) -> tuple[dict | None, HttpResponse | None]:
        """The request's credentials once the client and redirect_uri are known good, else an error page."""
        try:
            _scopes, credentials = self.validate_authorization_request(self.request)
        except OAuthToolkitError as error:
            return None, self.error_response(error, application=None)
        return credentials, None

    def _error_redirect(self, error: str, description: str) -> HttpResponse:
        """§3.1.2.6: an error to a registered redirect_uri (with state and iss), never to an unchecked one."""
        credentials, page = self._validated()
        if page is not None:
            return page
        audit.refused(self.request, "authorize", error, client_id=credentials["client_id"])
        params = {"error": error, **({"error_description": description} if description else {})}
        if credentials.get("state"):
            params["state"] = credentials["state"]
        params["iss"] = oauth2_settings.OIDC_ISS_ENDPOINT
        uri = credentials["redirect_uri"]
        application = get_application_model().objects.get(client_id=credentials["client_id"])
        return self.redirect(uri + ("&" if "?" in uri else "?") + urlencode(params), application)

    def _step_up(self, request: HttpRequest) -> HttpResponse:
        """A product needs a multi-factor sign-in and this session has one factor: the second step's
        page for the signed-in user (not the password again), or, without a second factor, the
        account page to set one up; then back here."""
        _credentials, page = self._validated()
        if page is not None:
            return page
        return step_up(request, request.get_full_path())

    def _reauthenticate(self, request: HttpRequest) -> HttpResponse:
        """Our login page again, even though signed in; back here afterwards without prompt=login and
        max_age, which the fresh login satisfies (kept, max_age=0 would send the user round forever).
        The session remembers the ask (central.ask_reauthentication), so editing the URL does not skip it."""
        _credentials, page = self._validated()
        if page is not None:
            return page
        central.ask_reauthentication(request)
        query = request.GET.copy()
        query.pop("max_age", None)
        rest = [p for p in query.get("prompt", "").split() if p != "login"]
        if rest:
            query["prompt"] = " ".join(rest)
        else:
            query.pop("prompt", None)
        back = f"{request.path}?{query.urlencode()}"
        # A plain redirect: the toolkit's OAuth2ResponseRedirect refuses a relative URL (a 400).
        return HttpResponseRedirect(f"{reverse('login')}?{urlencode({'next': back, 'reauth': '1'})}")


@functools.cache
def _discovery_extras() -> dict[str, Any]:
    issuer = oauth2_settings.OIDC_ISS_ENDPOINT
    return {
        "id_token_signing_alg_values_supported": [keys.ALGORITHM],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token", device.GRANT_TYPE],
        "revocation_endpoint": issuer + reverse("oauth2_provider:revoke-token"),
        "device_authorization_endpoint": issuer + reverse("oauth2_provider:device-authorization"),  # RFC 8628 §4
        "introspection_endpoint": issuer + reverse("oauth2_provider:introspect"),
        # "none": a public product revokes its own tokens with its client_id alone (RFC 7009 §2.1).
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid",
                             "acr", "amr", "email", "email_verified", "name"],
        # "1": one factor, "2": several (acr_values=2, or the claims parameter with acr essential).
        "acr_values_supported": list(acr.LEVELS),
        "claims_parameter_supported": True,
    }


class DiscoveryView(toolkit.ConnectDiscoveryInfoView):
    """OpenID Connect Discovery 1.0 §4: the same document at the root and under the provider's prefix.

    Built once per process: every URL in it derives from the configured issuer, not the request."""

    body: bytes | None = None

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if DiscoveryView.body is None:
            data = json.loads(super().get(request, *args, **kwargs).content)
            data.update(_discovery_extras())
            DiscoveryView.body = json.dumps(data).encode()
        response = HttpResponse(DiscoveryView.body, content_type="application/json")
        response["Access-Control-Allow-Origin"] = "*"
        response["Cache-Control"] = "public, max-age=3600"
        return response


def jwks_cache_control(publish_seconds: int) -> str:
    """Products may cache the key set for half the publish delay, so a rotated-in key reaches every
    product's cache before it signs (keys.py); with no delay (< 2 s) they must revalidate each time."""
    return f"public, max-age={publish_seconds // 2}" if publish_seconds >= 2 else "no-cache"


def jwks_view(request: HttpRequest) -> HttpResponse:
    """RFC 7517 key set: every published key of the ring (the signing one, the next, the retired)."""
    response = JsonResponse(keys.ring().jwks())
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = jwks_cache_control(conf.get("OIDC_KEY_PUBLISH_SECONDS"))
    return response


def _read(model: Any, *related: str) -> introspection.Read:
    return lambda digest: model.objects.select_related("user", "application", *related).filter(token_checksum=digest).first()


def authenticated_client(request: HttpRequest) -> Any:
    """The client that authenticated this back-channel request with its secret (Basic or form), else None."""
    oauth_request = OAuthRequest(request.build_absolute_uri(), "POST", request.POST.dict(),
                                 {"HTTP_AUTHORIZATION": request.META.get("HTTP_AUTHORIZATION", "")})
    oauth_request.client_id = request.POST.get("client_id")
    oauth_request.client_secret = request.POST.get("client_secret")
    if Validator().authenticate_client(oauth_request):
        return oauth_request.client
    return None


@csrf_exempt
@require_POST
def introspect_view(request: HttpRequest) -> HttpResponse:
    """RFC 7662: token state for the authenticated confidential client that owns the token."""
    client = authenticated_client(request)
    if client is None or client.client_type != client.CLIENT_CONFIDENTIAL:
        audit.refused(request, "introspect", "invalid_client")
        response = JsonResponse({"error": "invalid_client"}, status=401)
        response["WWW-Authenticate"] = 'Basic realm="introspection"'
        return oauth_no_store(response)
    value = request.POST.get("token")
    if not value:
        return oauth_no_store(JsonResponse({"error": "invalid_request", "error_description": "token is missing"},
                                           status=400))
    if len(value) > introspection.MAX_TOKEN_LENGTH:  # longer than any token we issue: one we did not issue
        return oauth_no_store(JsonResponse({"active": False}))
    token = introspection.token_of(value, request.POST.get("token_type_hint", ""),
                                   _read(AccessToken), _read(RefreshToken, "access_token"))
    return oauth_no_store(JsonResponse(introspection.body(client, token)))


GRANT_TYPES = ("authorization_code", "refresh_token", device.GRANT_TYPE)
MAX_PARAMETER_LENGTH = 2048  # longer than any redirect URI we register; codes and tokens are far shorter


def malformed_form(request: HttpRequest) -> tuple[str, str] | None:
    """(error, description) for a back-channel form that repeats a parameter (RFC 6749 §3.1: the toolkit
    reads the last value of each, so a repeated one would pass) or has one longer than any we issue."""
    for _name, values in request.POST.lists():
        if len(values) > 1:
            return "invalid_request", "a parameter is repeated"
        if len(values[0]) > MAX_PARAMETER_LENGTH:
            return "invalid_request", "a parameter is too long"
    return None


def malformed_token_request(request: HttpRequest) -> tuple[str, str] | None:
    """(error, description) for a token request refused before the toolkit sees it, else None.

    RFC 6749 §3.2: each parameter once and of a sane length (malformed_form). §5.2: a grant type we do not offer is unsupported_grant_type (the toolkit
    answers unauthorized_client for password and client_credentials). The device grant is offered
    (to the mail clients' products: validators.validate_grant_type).
    """
    malformed = malformed_form(request)
    if malformed is not None:
        return malformed
    verifier = request.POST.get("code_verifier")
    if verifier is not None and not CODE_VERIFIER.fullmatch(verifier):
        return "invalid_request", "code_verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~"
    grant_type = request.POST.get("grant_type")
    if not grant_type:
        return "invalid_request", "grant_type is missing"
    if grant_type not in GRANT_TYPES:
        return "unsupported_grant_type", "only authorization_code, refresh_token and device_code"
    return None


class TokenView(toolkit.TokenView):
    """RFC 6749 §3.2: the toolkit's token endpoint; a refusal is logged without secrets.

    Every error is RFC 6749 §5.2's JSON with Cache-Control: no-store, including the refusals our
    validator raises inside the toolkit's save (GrantRefused: a code or refresh token that another
    request spent first), and a token that a concurrent replay revoked before the toolkit read it
    back for its app_authorized signal (DoesNotExist: a 500). A refresh retried by the same
    confidential client moments after its rotation is answered with that rotation's pair (Retried:
    sso/refresh_retry.py)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = malformed_token_request(request)
        response: HttpResponse | None = None
        if refused is None:
            try:
                # Every grant through oauthlib and our validator, the device grant's polls too (RFC 8628 §3.5:
                # validate_device_code, device.py): the toolkit's post would read the device grant itself,
                # answering an unknown device code with a 404 and a missing one with a 500.
                response = self.authorization_flow_token_response(request)
            except GrantRefused as refusal:
                if refusal.undo is not None:
                    refusal.undo()
                refused = ("invalid_grant", refusal.description)
            except Retried as retried:
                audit.retried(request, retried.client_id)
                response = oauth_no_store(JsonResponse(retried.answer))
            except AccessToken.DoesNotExist:
                refused = ("invalid_grant", "the grant was revoked by a concurrent request")
        if refused is not None:
            response = oauth_no_store(JsonResponse({"error": refused[0], "error_description": refused[1]}, status=400))
        assert response is not None
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            response = _as_json_error(response)
        if response.status_code == 401:
            # §5.2: a 401 names the scheme the client authenticates with (oauthlib says Bearer).
            response["WWW-Authenticate"] = 'Basic realm="token"'
        if response.status_code >= 400:
            audit.refused(request, "token", _error_code(response), client_id=request.POST.get("client_id"),
                          grant_type=request.POST.get("grant_type", "")[:40])
        return response

    @method_decorator(sensitive_post_parameters("password", "client_secret"))
    def authorization_flow_token_response(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """The toolkit's, without reading the new access token back when nothing listens to its
        app_authorized signal (nothing does here): one query fewer per grant. With a receiver
        connected, the toolkit's own method runs."""
        if app_authorized.has_listeners(self):
            return super().authorization_flow_token_response(request, *args, **kwargs)
        _url, headers, body, status = self.create_token_response(request)
        response = HttpResponse(content=body, status=status)
        for name, value in headers.items():
            response[name] = value
        return response


def _as_json_error(response: HttpResponse) -> HttpResponse:
    """§5.2 for an error the toolkit answered with oauthlib's JSON but without its Content-Type (an
    OAuth2Error raised while saving, e.g. RFC 8707's invalid_target): the same body, as JSON, no-store."""
    try:
        json.loads(response.content)
    except ValueError:
        return oauth_no_store(JsonResponse({"error": "invalid_request"}, status=response.status_code))
    response["Content-Type"] = "application/json"
    return oauth_no_store(response)


@method_decorator(csrf_exempt, name="dispatch")
class RevokeView(toolkit.RevokeTokenView):
    """RFC 7009: the toolkit's revocation endpoint; a refusal is logged without secrets."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        if response.status_code >= 400:
            audit.refused(request, "revoke", _error_code(response))
        return response


def _error_code(response: HttpResponse) -> str:
    try:
        return str(json.loads(response.content).get("error", ""))[:40]
    except (ValueError, AttributeError):
        return ""
