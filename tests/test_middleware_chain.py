"""The middleware chain declared once (loginsvc/middleware_chain.py): settings are built from it, and the fast paths follow it or turn off."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings
from django.utils.module_loading import import_string

from loginsvc import middleware_chain
from loginsvc.accounts import fast_session
from loginsvc.middleware_chain import CHAIN, Middleware, Request, Response
from loginsvc.sso import fast_token
from tests.test_session_fast_path import compare, environ_for, signed_in  # noqa: F401 - a fixture

PATHS = [entry.path for entry in CHAIN]


def test_settings_middleware_is_the_declared_chain() -> None:
    assert list(settings.MIDDLEWARE) == PATHS == middleware_chain.MIDDLEWARE
    assert len(set(PATHS)) == len(PATHS)


def test_every_entry_declares_both_roles_and_exists() -> None:
    for entry in CHAIN:
        assert isinstance(entry.request, Request) and isinstance(entry.response, Response), entry
        middleware = import_string(entry.path)
        if entry.request is Request.PROCESS:
            assert hasattr(middleware, "process_request"), entry
        if entry.request is Request.OWN_PATHS:
            assert isinstance(import_string(entry.routes), dict), entry
        else:
            assert entry.routes == "", entry


def _swapped(paths: list[str]) -> list[str]:
    return [paths[1], paths[0], *paths[2:]]


@pytest.mark.django_db
@pytest.mark.parametrize("chain", [
    pytest.param(_swapped(PATHS), id="reordered"),
    pytest.param([path for path in PATHS if "XFrameOptions" not in path], id="one left out"),
    pytest.param([*PATHS, "django.middleware.gzip.GZipMiddleware"], id="one added"),
])
def test_a_chain_other_than_the_declared_one_turns_both_fast_paths_off(chain: list[str], caplog) -> None:
    django_app = WSGIHandler()
    with override_settings(MIDDLEWARE=chain):
        assert fast_session.unsupported() == fast_token.unsupported() == (
            "MIDDLEWARE is not the chain declared in loginsvc/middleware_chain.py")
        assert fast_session.wrap(django_app) is django_app
        assert fast_token.wrap(django_app) is django_app
    assert "session fast path off: MIDDLEWARE is not the chain declared" in caplog.text
    assert "SSO fast path off: MIDDLEWARE is not the chain declared" in caplog.text


def declare(monkeypatch: pytest.MonkeyPatch, chain: tuple[Middleware, ...]) -> override_settings:
    """`chain` as the declared chain (until the test ends), and settings.MIDDLEWARE built from it (in the `with`)."""
    monkeypatch.setattr(middleware_chain, "CHAIN", chain)
    return override_settings(MIDDLEWARE=[entry.path for entry in chain])


@pytest.mark.django_db
def test_an_entry_acting_on_cookies_that_the_session_fast_path_does_not_mirror_turns_only_it_off(
        monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    messages = Middleware("django.contrib.messages.middleware.MessageMiddleware", Request.COOKIES, Response.NOTHING)
    with declare(monkeypatch, (*CHAIN, messages)):
        django_app = WSGIHandler()
        assert fast_session.wrap(django_app) is django_app
        assert isinstance(fast_token.wrap(django_app), fast_token.FastTokenApp)  # it answers requests without cookies
    assert "session fast path off: the chain's middlewares acting on cookies" in caplog.text


@pytest.mark.django_db
@pytest.mark.parametrize("chain, reason", [
    pytest.param(tuple(entry for entry in CHAIN if entry.request is not Request.OBSERVING),
                 "no middleware of the chain tags", id="nothing observes"),
    pytest.param((CHAIN[3], *CHAIN[:3], *CHAIN[4:]), "a middleware reads the request before", id="forwarding late"),
    pytest.param((*CHAIN, Middleware("tests.test_middleware_chain.Answers", Request.OWN_PATHS, Response.NOTHING,
                                     routes="tests.test_middleware_chain.ROUTES")),
                 "tests.test_middleware_chain.Answers answers a path of the fast path itself", id="own paths"),
])
def test_a_declared_chain_the_fast_paths_cannot_stand_in_for_turns_both_off(
        monkeypatch: pytest.MonkeyPatch, chain: tuple[Middleware, ...], reason: str) -> None:
    with declare(monkeypatch, chain):
        django_app = object()  # never called: wrap() only hands it back
        assert reason in (fast_session.unsupported() or "") and reason in (fast_token.unsupported() or "")
        assert fast_session.wrap(django_app) is django_app and fast_token.wrap(django_app) is django_app


ROUTES = {"/api/session": None, "/oidc/userinfo/": None}  # what a middleware answering the fast paths' paths routes


@pytest.mark.django_db
def test_the_session_fast_path_follows_the_declared_chain(monkeypatch: pytest.MonkeyPatch, signed_in) -> None:
    """Its request and response phases are derived: without XFrameOptionsMiddleware both paths
    answer without X-Frame-Options, byte for byte alike, and the plain case is still served fast."""
    with declare(monkeypatch, tuple(entry for entry in CHAIN if "XFrameOptions" not in entry.path)):
        apps = fast_session.wrap(WSGIHandler()), WSGIHandler()
        assert isinstance(apps[0], fast_session.FastSessionApp), fast_session.unsupported()
        for method in ("GET", "HEAD"):
            answer = compare(apps, lambda: environ_for(signed_in, method=method), "served")
            assert "X-Frame-Options" not in dict(answer.headers) and "Vary" in dict(answer.headers)
