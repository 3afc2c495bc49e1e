"""The Prepared reads of sso/reads.py give what their QuerySets give: the same rows, objects and related objects.

The token endpoint, userinfo and introspection decide on these objects, so a read that drifted from
the ORM (a converter skipped, a related object missing, another row picked) would decide wrongly.
Each read is compared with its own QuerySet's first() on the same value, on SQLite and PostgreSQL.
"""
from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import RefreshToken

from loginsvc.sso import reads
from loginsvc.sso.introspection import checksum
from loginsvc.sso.models import SignIn
from tests.sso.conftest import Product, token
from tests.sso.tokens import tokens_for


@pytest.fixture
def mine(signed_in: Client, product: Product) -> dict[str, Any]:
    return tokens_for(signed_in, product)


def same_object(found: Any, expected: Any) -> None:
    assert type(found) is type(expected)
    assert {f.attname: getattr(found, f.attname) for f in found._meta.concrete_fields} == \
           {f.attname: getattr(expected, f.attname) for f in expected._meta.concrete_fields}
    assert found._state.adding is False and found._state.db == expected._state.db


@pytest.mark.django_db
def test_each_read_gives_its_querysets_object(mine, product) -> None:
    refresh = RefreshToken.objects.get(token_checksum=checksum(mine["refresh_token"]))
    cases = [(reads.ACCESS_TOKENS, checksum(mine["access_token"]), ("user", "application", "refresh_token")),
             (reads.REFRESH_TOKENS, checksum(mine["refresh_token"]), ("user", "application", "access_token")),
             (reads.REFRESH_GRANTS, checksum(mine["refresh_token"]), ("user", "application", "access_token")),
             (reads.APPLICATIONS, product.client_id, ())]
    for prepared, value, related in cases:
        expected = prepared.first_queryset(value).first()
        assert expected is not None
        found = prepared.first(value)
        same_object(found, expected)
        for name in related:  # loaded with the row (select_related), as the QuerySet's are
            assert name in found._state.fields_cache
            same_object(getattr(found, name), getattr(expected, name))
        assert prepared.first("0" * 64) is None
    sign_in = reads.sign_in_of(refresh.token_family)
    same_object(sign_in, SignIn.objects.filter(token_family=refresh.token_family).first())
    access = reads.ACCESS_TOKENS.first(checksum(mine["access_token"]))
    assert reads.amr_of_token(access) == reads.amr_of_token(refresh) == sign_in.amr == "pwd"
    reads._AMR_OF_FAMILY.clear()  # and read afresh, through the ORM's own lazy load
    assert reads.amr_of_token(RefreshToken.objects.get(pk=refresh.pk).access_token) == "pwd"


@pytest.mark.django_db
def test_the_grants_read_prefers_the_live_row_of_a_checksum(mine) -> None:
    live = RefreshToken.objects.get(token_checksum=checksum(mine["refresh_token"]))
    twin = RefreshToken.objects.get(pk=live.pk)
    twin.pk, twin.access_token, twin.revoked = None, None, timezone.now()
    twin.save()  # a later row with the same checksum, revoked: the grant must read the live one
    assert reads.REFRESH_GRANTS.first(live.token_checksum).pk == live.pk
    live.revoked = timezone.now()
    live.save()
    assert reads.REFRESH_GRANTS.first(live.token_checksum).revoked is not None


@pytest.mark.django_db
def test_a_refresh_grant_reads_outside_its_one_write_transaction(mine, product) -> None:
    """The grant's reads (client, token, sign-in) are Prepared reads before any transaction; the
    rotation's writes are one transaction; nothing reads the new access token back afterwards."""
    with CaptureQueriesContext(connection) as queries:
        response = token(product, grant_type="refresh_token", refresh_token=mine["refresh_token"])
    assert response.status_code == 200, response.content
    statements = [str(q["sql"]) for q in queries.captured_queries]
    kinds = [s.split()[0].upper() if s != "None" else "PREPARED" for s in statements]
    first_write = next(i for i, kind in enumerate(kinds) if kind in ("INSERT", "UPDATE", "DELETE", "BEGIN", "SAVEPOINT"))
    assert all(kind in ("SELECT", "PREPARED") for kind in kinds[:first_write]), statements
    assert kinds[first_write:].count("SELECT") == 0, statements
    assert len(statements) <= 11, statements
