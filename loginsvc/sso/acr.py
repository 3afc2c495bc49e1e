"""Which authentication level an authorization request needs: acr_values, the claims parameter, the product.

Two levels, named as Keycloak names them by default: "1", one factor (a password), and "2", several
(a password and a second factor). A request may ask for a level with `acr_values` (OpenID Connect
Core §3.1.2.1: a space-separated list, any of which will do, so the lowest listed level is what is
needed) or with the `claims` parameter's essential `acr` (§5.5.1.1: the `value` or one of the
`values`); unknown levels are ignored. A product registered with `require_mfa` needs "2" whatever
it asks, and so does a user whom ops' policy requires a second factor of (mfa/policy.py). The
answer is the highest of these.
"""
from __future__ import annotations

import json
from typing import Any

from loginsvc.mfa import policy
from loginsvc.sso.models import Product

LEVELS = ("1", "2")
SINGLE, MULTI = LEVELS
MAX_CLAIMS_LENGTH = 4096


def _lowest(values: Any) -> str | None:
    known = sorted(str(v) for v in values if str(v) in LEVELS) if isinstance(values, list) else []
    return known[0] if known else None


def _essential_acr(claims: dict[str, Any]) -> str | None:
    """The lowest level an essential `acr` request of the claims parameter accepts, or None."""
    found = []
    for member in ("id_token", "userinfo"):
        request = claims.get(member)
        acr = request.get("acr") if isinstance(request, dict) else None
        if isinstance(acr, dict) and acr.get("essential") is True:
            found.append(_lowest(acr["values"]) if "values" in acr else _lowest([acr.get("value")]))
    return max((level for level in found if level), default=None)


def problem(query: Any) -> str | None:
    """Why the request's claims parameter is invalid_request (§5.5: a JSON object), or None."""
    raw = query.get("claims")
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_CLAIMS_LENGTH:
        return "claims is too long"
    try:
        claims = json.loads(raw)
    except ValueError:
        return "claims must be a JSON object"
    return None if isinstance(claims, dict) else "claims must be a JSON object"


def needed(query: Any, user: Any) -> str:
    """The level the request needs: the highest of what it asks, what its product requires and what
    the policy requires of `user`. Call only after problem(query) is None."""
    levels = [_lowest(query.get("acr_values", "").split()) or SINGLE]
    if query.get("claims"):
        levels.append(_essential_acr(json.loads(query["claims"])) or SINGLE)
    if Product.objects.filter(application__client_id=query.get("client_id", ""), require_mfa=True).exists():
        levels.append(MULTI)
    if policy.requires_second_factor(user):
        levels.append(MULTI)
    return max(levels)
