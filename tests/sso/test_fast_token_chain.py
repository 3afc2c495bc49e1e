"""The SSO fast path under another declared middleware chain: its headers follow the chain, still Django's bytes."""
from __future__ import annotations

import pytest
from django.core.handlers.wsgi import WSGIHandler

from loginsvc.middleware_chain import CHAIN
from loginsvc.sso import fast_token
from tests.sso.conftest import Product
from tests.sso.test_fast_token import compare, introspection, keep_connection, mine, userinfo  # noqa: F401 - fixtures
from tests.test_middleware_chain import declare


@pytest.mark.django_db
def test_the_sso_fast_path_follows_the_declared_chain(monkeypatch: pytest.MonkeyPatch, mine, product: Product) -> None:
    """Without XFrameOptionsMiddleware both paths answer without X-Frame-Options, alike, still served fast."""
    with declare(monkeypatch, tuple(entry for entry in CHAIN if "XFrameOptions" not in entry.path)):
        apps = fast_token.wrap(WSGIHandler()), WSGIHandler()
        assert isinstance(apps[0], fast_token.FastTokenApp), fast_token.unsupported()
        for make in (userinfo(mine["access_token"]), introspection(product, {"token": mine["access_token"]})):
            answer = compare(apps, make, "served")
            assert "X-Frame-Options" not in dict(answer.headers) and "Vary" in dict(answer.headers)
