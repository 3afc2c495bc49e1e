"""CSP Level 3 §6.3.3 form-action applies to the redirects after a form POST: registered products must be listed."""
from __future__ import annotations

from django.test import Client

from loginsvc.sso import origins
from tests.sso.conftest import register


def _form_action(response) -> set[str]:
    directive = next(d for d in response["Content-Security-Policy"].split(";") if d.strip().startswith("form-action"))
    return set(directive.split()[1:])


def test_login_page_lets_the_form_continue_to_every_registered_product(db: None) -> None:
    origins.forget()
    register("webmail", post_logout="https://mail.example.test/bye")
    register("quarantine")
    targets = _form_action(Client().get("/login/"))
    assert {"'self'", "https://webmail.example.test", "https://quarantine.example.test",
            "https://mail.example.test"} <= targets
    assert "https://evil.example.test" not in targets


def test_a_product_registered_later_is_listed_once_the_cache_expires(db: None, monkeypatch) -> None:
    origins.forget()
    assert "https://late.example.test" not in _form_action(Client().get("/login/"))
    register("late")
    monkeypatch.setattr(origins, "CACHE_SECONDS", 0.0)
    assert "https://late.example.test" in _form_action(Client().get("/login/"))
