"""OpenID Connect Back-Channel Logout 1.0 §2.6: a logout token's checks, on Authlib's JWT claims validation."""
from __future__ import annotations

from typing import Any

from authlib.oauth2.claims import JWTClaims
from joserfc.errors import JoseError

from deploy.demo_products.provider import LEEWAY, Provider, TokenRejected
from deploy.demo_products.sessions import SessionStore

EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_TOKEN = 8192                  # a logout token is a few hundred bytes; anything this big is not one


class LogoutToken(JWTClaims):
    """The claims of a logout token: JWT rules from joserfc, plus what §2.4 requires of this kind."""

    REGISTERED_CLAIMS = [*JWTClaims.REGISTERED_CLAIMS, "events", "sid"]

    def validate(self, now: int | None = None, leeway: int = 0) -> None:
        super().validate(now, leeway)
        events = self.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):
            raise TokenRejected(f"events: must be an object with the member {EVENT}")
        for claim in ("sid", "sub"):
            if claim in self and (not isinstance(self[claim], str) or not self[claim]):
                raise TokenRejected(f"{claim}: must be a non-empty string")
        if not self.get("sid") and not self.get("sub"):
            raise TokenRejected("sid or sub: one of them is required")
        if "nonce" in self:  # §2.4: forbidden, so that an ID token can never pass as a logout token
            raise TokenRejected("nonce: must not be present")


def validate_logout_token(provider: Provider, token: str, client_id: str) -> dict[str, Any]:
    """§2.6 steps 3-6 in order: signature (RS256, the provider's JWKS), iss, aud, iat, jti, events, sid/sub,
    no nonce. The replay check (step 7) is the caller's, once everything else holds."""
    if not token or len(token) > MAX_TOKEN:
        raise TokenRejected("logout_token: missing or too long")
    decoded = provider.decode(token)
    options = {
        "iss": {"essential": True, "value": provider.issuer},
        "aud": {"essential": True, "value": client_id},
        "iat": {"essential": True},
        "jti": {"essential": True},
        "events": {"essential": True},
    }
    claims = LogoutToken(decoded.claims, decoded.header, options)
    try:
        claims.validate(leeway=LEEWAY)   # iat more than LEEWAY in the future, or exp passed: rejected
    except JoseError as exc:
        raise TokenRejected(f"{exc.error}: {exc.description or 'no detail'}") from None
    return dict(claims)


def handle_logout_token(provider: Provider, store: SessionStore, token: str, client_id: str) -> tuple[dict[str, Any], int]:
    """Validate, then end this product's sessions of that sid (or sub) — once per jti.

    A jti seen before (§2.6 step 7) changes nothing, but is answered 200 like the first time: it is
    the provider retrying a delivery whose 200 was lost, and a 400 would have it retry for a day."""
    claims = validate_logout_token(provider, token, client_id)
    if not store.first_use(client_id, claims["jti"]):
        return claims, 0
    return claims, store.end_matching(client_id, claims.get("sid"), claims.get("sub"))
