"""The token endpoint's, userinfo's and introspection's reads of tokens, clients and sign-ins, compiled once per thread.

Why: a refresh grant, a userinfo or an introspection answer is a handful of indexed lookups, and
building each lookup's SQL through the ORM cost more than running it (docs/benchmarks.md, the
SSO section). These are Prepared reads (sso/prepared.py): the same SQL and model objects as the
QuerySet beside each, built once per thread, and on PostgreSQL planned once per connection.
Every call reads the database: a revocation or logout is seen by the next request on any node.
"""
from __future__ import annotations

import uuid
from typing import Any

from django.db import connection
from django.db.models import F
from oauth2_provider.models import AccessToken, RefreshToken, get_application_model

from loginsvc.sso.models import SignIn
from loginsvc.sso.prepared import UUID_SENTINEL, Prepared

Application = get_application_model()

# An access token by checksum, with what userinfo and introspection look at (its refresh token for
# the family, whose sign-in says how the user authenticated).
ACCESS_TOKENS = Prepared(lambda checksum: AccessToken.objects.select_related("application", "user", "refresh_token")
                         .filter(token_checksum=checksum))
# A refresh token by checksum, as introspection finds it (the first row, as QuerySet.first()).
REFRESH_TOKENS = Prepared(lambda checksum: RefreshToken.objects.select_related("user", "application", "access_token")
                          .filter(token_checksum=checksum))
# The refresh grant's read: an unrevoked row before a revoked one with the same checksum (a rotated
# token's row stays, revoked), with everything the grant's rules look at.
REFRESH_GRANTS = Prepared(lambda checksum: RefreshToken.objects.select_related("user", "application", "access_token")
                          .filter(token_checksum=checksum).order_by(F("revoked").desc(nulls_first=True)))
# Introspection's read of an access token (the fast path, sso/fast_token.py): its client whole (only() names
# none of its columns; it may be the asking client, which authenticates against it), of the token, its user
# and its refresh token only what introspection.active() and body() look at. Each column less is a conversion
# less (SQLite keeps datetimes as text): ~20 us of a ~190 us answer. A column they read and this leaves out
# would cost a query of its own: tests/sso/test_introspection_client_cache.py counts them.
INTROSPECTED = ("user_id", "application_id", "expires", "scope", "created", "user__email", "user__is_active",
                "refresh_token__token_family")


def _introspected(*more: str) -> Prepared:
    return Prepared(lambda checksum: AccessToken.objects.select_related("application", "user", "refresh_token")
                    .only(*INTROSPECTED, *more).filter(token_checksum=checksum))


INTROSPECTED_TOKENS = _introspected()
# The same for an asking client that is not the token's own (the mail server, kept by the fast path): of the
# token's client only what body() tells, its client_id (~15 us less: a model with some 25 fields).
INTROSPECTED_TOKENS_OF_OTHERS = _introspected("application__client_id")
APPLICATIONS = Prepared(lambda client_id: Application.objects.filter(client_id=client_id))
SIGN_INS = Prepared(lambda family: SignIn.objects.filter(token_family=family), UUID_SENTINEL)
_FAMILY = SignIn._meta.get_field("token_family")

ALL = (ACCESS_TOKENS, REFRESH_TOKENS, REFRESH_GRANTS, APPLICATIONS, SIGN_INS, INTROSPECTED_TOKENS,
       INTROSPECTED_TOKENS_OF_OTHERS)


def sign_in_of(family: uuid.UUID) -> SignIn | None:
    """The sign-in a refresh-token family continues (token_rules.refresh_sign_in). The value is
    converted as the ORM would (SQLite keeps UUIDs as hex text): a Prepared read takes it as it is."""
    return SIGN_INS.first(_FAMILY.get_db_prep_value(family, connection))


# A family's amr never changes (a step-up makes a new sign-in, with a new family), so each process
# keeps the ones it has read; bounded, emptied when full.
_AMR_OF_FAMILY: dict[uuid.UUID, str] = {}
AMR_CACHE_SIZE = 10_000


def amr_of_token(token: Any) -> str | None:
    """How the sign-in an access or refresh token continues authenticated (RFC 8176 values,
    space-separated), or None when it has none (a token issued outside a sign-in)."""
    if isinstance(token, AccessToken):
        try:
            token = token.refresh_token  # loaded with the token by ACCESS_TOKENS
        except RefreshToken.DoesNotExist:
            return None
    family = token.token_family
    if family is None:
        return None
    amr = _AMR_OF_FAMILY.get(family)
    if amr is None:
        sign_in = sign_in_of(family)
        if sign_in is None:
            return None
        if len(_AMR_OF_FAMILY) >= AMR_CACHE_SIZE:
            _AMR_OF_FAMILY.clear()
        amr = _AMR_OF_FAMILY[family] = sign_in.amr
    return amr
