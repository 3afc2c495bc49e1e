"""django-oauth-toolkit's validator, taught the central session: sid and auth_time in ID tokens, one key ring.

Thin on purpose: each override adds one thing django-oauth-toolkit does not know and calls up.
- The authorization view puts the central session's sid and auth_time on the request
  (credentials); the code's SignIn row carries them to the token endpoint, and the refresh-token
  family carries them to every refresh. So auth_time is this session's login (the toolkit uses
  user.last_login, which another browser's login moves) and every ID token has the session's sid.
- Tokens are signed with the ring's current key and verified by kid (sso/keys.py), parsed once.
- A refresh token is refused once its sign-in is older than the central session may live, or
  when it went unused longer than the session's idle timeout (the central session bounds SSO).
- Stricter than the toolkit where the RFCs are: redirect URIs match exactly and are required, a
  mismatch at the token endpoint is invalid_grant, a replayed code revokes what it gave, access
  tokens only in the Authorization header; prompt=none is decided by the view (it has the session).
- Tokens of a user who may no longer sign in are refused by every grant and by userinfo
  (token_rules.py), whether or not ending the user's sign-ins has revoked them yet.
- Races between nodes are settled in save_bearer_token's transaction (the toolkit saves the tokens
  first and spends the code afterwards, in another transaction): the code's grant row is deleted
  before any token is saved, and a refresh token is revoked by a conditional UPDATE. The request
  that finds the grant gone, or the token rotated, saves nothing (GrantRefused, or Retried for the
  same confidential client's retry: sso/refresh_retry.py). A grant gone between two reads of
  validation is the same replay (_grant).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.utils import timezone
from jwcrypto import jws, jwt
from oauth2_provider.models import AccessToken, Grant, IDToken, RefreshToken
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.common import Request
from oauthlib.oauth2.rfc6749 import errors

from loginsvc import conf
from loginsvc.sso import central, device, keys, reads, refresh_retry, token_rules
from loginsvc.sso.introspection import checksum
from loginsvc.sso.models import SignIn


def revoke_replayed(code: str, client: Any) -> None:
    """RFC 6749 §4.1.2: a code used twice SHOULD revoke the tokens it gave (someone else holds it):
    the refresh-token family the code started, with its access tokens."""
    family = (SignIn.objects.filter(code_hash=checksum(code), application=client)
              .exclude(token_family=None).values_list("token_family", flat=True).first())
    if family is not None:
        RefreshToken.revoke_family(family)


class GrantRefused(Exception):
    """invalid_grant, found inside save_bearer_token's transaction, which rolls back everything the
    request wrote there (its ID token included); `undo` then runs in its own (views.TokenView): the
    family of a replayed code or refresh token."""

    def __init__(self, description: str, undo: Callable[[], None] | None = None) -> None:
        super().__init__(description)
        self.description, self.undo = description, undo


class Retried(Exception):
    """A refresh token rotated by a concurrent request of the same confidential client: this request
    answers with that rotation's pair (`answer`), saving nothing (sso/refresh_retry.py)."""

    def __init__(self, answer: dict[str, Any], client_id: str) -> None:
        super().__init__("answered from the rotation receipt")
        self.answer, self.client_id = answer, client_id


# The ID token this thread signed last and its row (the validator is shared by threads: the toolkit
# caches its OAuthLibCore per view class).
_just_signed = threading.local()


class Validator(OAuth2Validator):
    # Which scope releases which claim (userinfo and ID token alike); sub always.
    oidc_claim_scope = {"sub": "openid", "email": "email", "email_verified": "email", "name": "profile",
                        "acr": "openid", "amr": "openid"}

    # --- claims ---------------------------------------------------------------------------------------
    def get_additional_claims(self, request: Request) -> dict[str, Any]:
        user = request.user
        # Accounts are the platform's own mailboxes, created by its operators: the address is verified.
        claims = {"email": user.email, "email_verified": True, "name": user.display_name or user.email}
        # How the token's sign-in authenticated: the grant's own sign-in, or (userinfo) the access token's.
        sign_in = getattr(request, "sign_in", None)
        amr = sign_in.amr if sign_in is not None else None
        if amr is None and isinstance(getattr(request, "access_token", None), AccessToken):
            amr = reads.amr_of_token(request.access_token)
        if amr is not None:
            claims.update(amr=amr.split(), acr=central.acr_of(amr))
        return claims

    def get_id_token_dictionary(self, token: dict, token_handler: Any, request: Request) -> tuple[dict, Any]:
        claims, expiration = super().get_id_token_dictionary(token, token_handler, request)
        sign_in: SignIn | None = getattr(request, "sign_in", None)
        if sign_in is not None:
            claims["auth_time"] = sign_in.auth_time
            claims["sid"] = sign_in.sid
            claims["amr"] = sign_in.amr.split()  # RFC 8176, as the sign-in authenticated
            claims["acr"] = central.acr_of(sign_in.amr)
        return claims, expiration

    # --- signing keys ---------------------------------------------------------------------------------
    def finalize_id_token(self, id_token: dict, token: dict, token_handler: Any, request: Request) -> str:
        claims, expiration_time = self.get_id_token_dictionary(token, token_handler, request)
        id_token.update(**claims)
        # iat from the clock read that made exp (oauthlib read its own a moment before, and a second could
        # tick over in between): the token lives exactly ID_TOKEN_EXPIRE_SECONDS.
        id_token["iat"] = id_token["exp"] - oauth2_settings.ID_TOKEN_EXPIRE_SECONDS
        if "nonce" not in id_token and request.nonce:  # oauthlib #746, as the toolkit works around it
            id_token["nonce"] = request.nonce
        key = keys.ring().signing_key()
        signed = jwt.JWT(header={"typ": "JWT", "alg": keys.ALGORITHM, "kid": key.kid},
                         claims=json.dumps(id_token, default=str))
        signed.make_signed_token(key.private)
        # Saved with the tokens, at the start of _save_bearer_token's transaction: one write
        # transaction fewer, and a refused request leaves no row behind.
        saved = IDToken(user=request.user, scope=request.scope or " ".join(request.scopes),
                        expires=expiration_time, jti=id_token["jti"], application=request.client)
        request.access_token = request.id_token = saved
        serialized = signed.serialize()
        _just_signed.token = (serialized, saved)
        return serialized

    def _load_id_token(self, token: str) -> Any:
        """The row of the ID token this thread has just signed (the toolkit's _create_access_token
        asks for it right after finalize_id_token), without parsing, verifying and reading it back."""
        signed = getattr(_just_signed, "token", None)
        _just_signed.token = None
        if signed is not None and signed[0] == token:
            return signed[1]
        return super()._load_id_token(token)

    def _get_key_for_token(self, token: str) -> Any:
        """The ring's key named by the token's kid (the toolkit would parse the application's PEM)."""
        unverified = jws.JWS()
        unverified.deserialize(token)
        header = unverified.jose_header
        found = keys.ring().by_kid(header.get("kid") if isinstance(header, dict) else None)
        return found.private if found else None

    # --- clients ------------------------------------------------------------------------------------------
    def _load_application(self, client_id: str, request: Request) -> Any:
        """The toolkit's method, given the client it would read first (its cached-client branch) from a
        Prepared read (sso/reads.py) instead of the ORM's get. A client not found, or registered from
        a metadata document (CIMD, which the toolkit may re-fetch), is left to the toolkit."""
        if not request.client and client_id and "\x00" not in client_id:
            client = reads.APPLICATIONS.first(client_id)
            if client is not None and client.registration_source != client.RegistrationSource.CIMD:
                request.client = client
        return super()._load_application(client_id, request)

    # --- prompt=none ------------------------------------------------------------------------------------
    # oauthlib asks these for prompt=none and the toolkit does not implement them (NotImplementedError:
    # a 500 for every signed-in prompt=none). The answer needs the browser's session, which oauthlib's
    # request lacks, so the authorization view decides: login_required when nobody is signed in or the
    # login is older than max_age, consent_required when the consent page would be shown (sso/views.py).
    def validate_silent_login(self, request: Request) -> bool:
        return True

    def validate_silent_authorization(self, request: Request) -> bool:
        return True

    # --- bearer tokens -----------------------------------------------------------------------------------
    def validate_bearer_token(self, token: str, scopes: list[str], request: Request) -> bool:
        """RFC 9700 §4.3.2 / RFC 6750 §2.3: an access token only in the Authorization header. The
        toolkit's own check (COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT) guards its protected
        resource views but not userinfo, where ?access_token= and a form body were accepted."""
        if "Authorization" not in request.headers:
            return False
        if not super().validate_bearer_token(token, scopes, request):
            return False
        if not token_rules.user_active(request.access_token):  # ASVS 3.3.3: a disabled user's tokens die
            request.oauth2_error = {"error": "invalid_token", "error_description": "The access token is invalid."}
            return False
        return True

    # --- scopes ------------------------------------------------------------------------------------------
    def validate_scopes(self, client_id: str, scopes: Any, client: Any, request: Request, *args: Any,
                        **kwargs: Any) -> bool:
        """The toolkit's check, and `mail` and `offline_access` only for the mail clients' products
        (LOGINSVC_MAIL_CLIENTS): a mail token opens IMAP and SMTP, and offline_access outlives the
        central session, so no other product gets either by asking."""
        if MAIL_ONLY & set(scopes) and client.client_id not in conf.get("MAIL_CLIENTS"):
            return False
        return super().validate_scopes(client_id, scopes, client, request, *args, **kwargs)

    # --- the device authorization grant (RFC 8628; device.py) ---------------------------------------------------
    def validate_grant_type(self, client_id: str, grant_type: str, client: Any, request: Request, *args: Any,
                            **kwargs: Any) -> bool:
        """The toolkit's check, and the device grant for the mail clients' products too: a product is registered
        with one grant type (authorization-code), and a mail client may use either way to sign in."""
        if grant_type == device.GRANT_TYPE and device.may_use(client.client_id):
            return True
        return super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs)

    def validate_device_code(self, client_id: str, code: str, request: Request, *args: Any, **kwargs: Any) -> str | None:
        return device.poll(request.client, code, request)

    # --- redirect URIs -----------------------------------------------------------------------------------
    def validate_redirect_uri(self, client_id: str, redirect_uri: str, request: Request, *args: Any, **kwargs: Any) -> bool:
        """RFC 9700 §2.1 / §4.1.3: exact string match with a registered URI, but for the port of a loopback
        redirect (RFC 8252 §7.3: a native app, such as a mail client, listens on a port the system chose).
        The toolkit compares the host case-insensitively, so https://WEBMAIL.example.test/callback passed
        for a product that registered https://webmail.example.test/callback."""
        if redirect_uri not in request.client.redirect_uris.split() and not is_loopback(redirect_uri):
            return False  # a loopback redirect's port varies: the toolkit's own check allows that (RFC 8252 §7.3)
        return super().validate_redirect_uri(client_id, redirect_uri, request, *args, **kwargs)

    def get_default_redirect_uri(self, client_id: str, request: Request, *args: Any, **kwargs: Any) -> None:
        """None: redirect_uri is required at authorize (OpenID Connect Core §3.1.2.1), so it is at the
        token endpoint too (RFC 6749 §4.1.3); oauthlib then refuses a request without it."""
        return None

    def confirm_redirect_uri(self, client_id: str, code: str, redirect_uri: str, client: Any, request: Request,
                             *args: Any, **kwargs: Any) -> bool:
        """RFC 6749 §4.1.3: identical to the authorization request's. A mismatch is invalid_grant (§5.2:
        the grant "does not match the redirection URI used in the authorization request"); oauthlib
        would answer invalid_request."""
        if self._grant(code, client, request).redirect_uri != redirect_uri:
            raise errors.InvalidGrantError(description="redirect_uri does not match the authorization request",
                                           request=request)
        return True

    # --- the central session, carried from authorize to token to refresh --------------------------------
    def _create_authorization_code(self, request: Request, code: dict, expires: Any = None) -> Grant:
        grant = super()._create_authorization_code(request, code, expires)
        SignIn.objects.create(sid=request.sso_sid, user=request.user, application=request.client,
                              auth_time=request.sso_auth_time, amr=request.sso_amr, code_hash=checksum(code["code"]),
                              offline=token_rules.OFFLINE_ACCESS in (request.scopes or ()))
        return grant

    def validate_code(self, client_id: str, code: str, client: Any, request: Request, *args: Any, **kwargs: Any) -> bool:
        if not super().validate_code(client_id, code, client, request, *args, **kwargs):
            revoke_replayed(code, client)
            return False
        if not request.user.is_active:
            return False
        request.sign_in = SignIn.objects.filter(code_hash=checksum(code), application=client).first()
        return request.sign_in is not None

    def get_code_challenge(self, code: str, request: Request) -> str | None:
        return self._grant(code, request.client, request).code_challenge or None

    def get_code_challenge_method(self, code: str, request: Request) -> str | None:
        return self._grant(code, request.client, request).code_challenge_method or None

    @staticmethod
    def _grant(code: str, client: Any, request: Request) -> Grant:
        """The code's grant, for the checks after validate_code. Gone meanwhile, a concurrent request
        redeemed it: a replay (RFC 6749 §4.1.2), invalid_grant, and what the code gave is revoked.
        (The toolkit's Grant.objects.get raised DoesNotExist there: a 500.)"""
        grant = Grant.objects.filter(code=code, application=client).first()
        if grant is None:
            revoke_replayed(code, client)
            raise errors.InvalidGrantError(description="the authorization code was already used", request=request)
        return grant

    def invalidate_authorization_code(self, client_id: str, code: str, request: Request, *args: Any, **kwargs: Any) -> None:
        """Nothing left to do once _spend_code deleted the grant with the tokens' transaction."""
        if not getattr(request, "code_spent", False):
            super().invalidate_authorization_code(client_id, code, request, *args, **kwargs)

    def _save_bearer_token(self, token: dict, request: Request, *args: Any, **kwargs: Any) -> None:
        """The toolkit's save, inside its transaction, once this request is known to be the only one
        spending its code or rotating its refresh token."""
        pending = getattr(request, "id_token", None)
        if isinstance(pending, IDToken) and pending._state.adding:
            pending.save()
        if request.grant_type == "refresh_token":
            self._rotate(token, request)
            refresh_retry.keep(request.refresh_token, request.client, token)
            return
        if request.grant_type == device.GRANT_TYPE and not device.spend(request):
            raise GrantRefused("the device code was already used")
        if request.grant_type == "authorization_code":
            # RFC 8707 first: it reads the grant's resources, which _spend_code deletes; the toolkit's
            # save asks again and keeps what this call settled.
            self._check_and_set_request_resource(request)
            self._spend_code(request)
        super()._save_bearer_token(token, request, *args, **kwargs)

    def _spend_code(self, request: Request) -> None:
        """RFC 6749 §4.1.2: a code is used once. The grant row is deleted before any token is saved,
        in the same transaction: of two requests with one code, the second deletes nothing (on
        PostgreSQL it waits for the first to commit), saves nothing, and revokes what the code
        gave the first."""
        code, client = request.code, request.client
        if not Grant.objects.filter(code=code, application=client).delete()[0]:
            raise GrantRefused("the authorization code was already used", lambda: revoke_replayed(code, client))
        request.code_spent = True

    def _rotate(self, token: dict, request: Request) -> None:
        """RFC 6749 §6, RFC 9700 §4.14.2: the old pair revoked and a new pair of the same family saved.

        The revocation is one conditional UPDATE (still unrevoked): of two requests rotating one
        token, the second changes nothing (on PostgreSQL it waits for the first to commit) and
        saves nothing (_rotated_meanwhile). Not the toolkit's rotation, which re-reads and re-locks
        rows this request already holds and saves whole rows (docs/benchmarks.md, the SSO section)."""
        if "scope" not in token:
            raise errors.FatalClientError("Failed to renew access token: missing scope")
        self._check_and_set_request_resource(request)  # RFC 8707, as the toolkit's save does first
        old, now = request.refresh_token_instance, timezone.now()
        if not RefreshToken.objects.filter(pk=old.pk, revoked=None).update(revoked=now, updated=now, access_token=None):
            self._rotated_meanwhile(request)
        # The row's only reference (the old refresh token's) is cleared above: delete it without the
        # ORM's collector, which would read it and clear that reference once more.
        AccessToken.objects.filter(pk=old.access_token_id)._raw_delete(AccessToken.objects.db)
        expires = now + timedelta(seconds=token.get("expires_in", oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS))
        access_token = self._create_access_token(expires, request, token, source_refresh_token=old)
        self._create_refresh_token(request, token["refresh_token"], access_token, old)

    def _rotated_meanwhile(self, request: Request) -> None:
        """The refresh token was rotated or revoked since it was validated: a concurrent request used
        it. The same confidential client's retry gets that rotation's answer (Retried), anything
        else is a replay that revokes the family (GrantRefused)."""
        answer = refresh_retry.answer(request.refresh_token, request.client)
        if answer is not None:
            raise Retried(answer, request.client.client_id)
        family = request.refresh_token_instance.token_family
        raise GrantRefused("the refresh token was already used", lambda: RefreshToken.revoke_family(family))

    def _create_refresh_token(self, request: Request, refresh_token_code: str, access_token: Any,
                              previous_refresh_token: Any) -> RefreshToken:
        refresh_token = super()._create_refresh_token(request, refresh_token_code, access_token, previous_refresh_token)
        sign_in: SignIn | None = getattr(request, "sign_in", None)
        if previous_refresh_token is None and sign_in is not None:
            # code_hash stays: a replay of the redeemed code finds the family to revoke (revoke_replayed).
            # Conditional: the sign-in must still exist (a logout since the code was validated deletes
            # it, and tokens saved now would outlive the logout) and have no family yet.
            if not SignIn.objects.filter(pk=sign_in.pk, token_family=None).update(token_family=refresh_token.token_family):
                raise GrantRefused("the sign-in has ended")
            sign_in.token_family = refresh_token.token_family
        return refresh_token

    def validate_refresh_token(self, refresh_token: str, client: Any, request: Request, *args: Any, **kwargs: Any) -> bool:
        """RFC 6749 §6, RFC 9700 §4.14.2: one read of the token with its user, client and access token
        (a Prepared read: sso/reads.py), then the rules. A revoked or rotated token is a replay that
        revokes its family (the toolkit's rules with REFRESH_TOKEN_GRACE_PERIOD_SECONDS = 0 and reuse
        protection), unless it is the same confidential client's retry (refresh_retry.py); then the
        central session's rules (token_rules.py: user active, idle, maximum age, sign-in, expiry).

        No lock and no transaction: the rotation decides (_rotate's conditional UPDATE, which waits for
        a concurrent rotation of this token to commit). A token read as revoked was revoked by a
        committed transaction, which saved the retry receipt with it; a token read as live but
        rotated meanwhile is found out by _rotate. Not the toolkit's validate_refresh_token: it reads
        the user and the client one by one after the token, and would revoke the family before the
        retry window could be asked."""
        token = reads.REFRESH_GRANTS.first(checksum(refresh_token))
        if token is None:
            return False
        if token.revoked is not None:
            answer = refresh_retry.answer(refresh_token, client)
            if answer is not None:
                raise Retried(answer, client.client_id)
            RefreshToken.revoke_family(token.token_family)
            return False
        if token.application_id != client.pk:
            return False
        sign_in = token_rules.refresh_sign_in(token)
        if sign_in is None:
            return False
        request.user, request.refresh_token, request.refresh_token_instance = token.user, refresh_token, token
        request.sign_in = sign_in
        return True


MAIL_ONLY = frozenset({"mail", token_rules.OFFLINE_ACCESS})  # scopes of the mail clients' products alone


def is_loopback(redirect_uri: str) -> bool:
    """A native app's loopback redirect (RFC 8252 §7.3): http on an IP literal of this machine."""
    return redirect_uri.startswith(("http://127.0.0.1:", "http://127.0.0.1/", "http://[::1]:", "http://[::1]/"))
