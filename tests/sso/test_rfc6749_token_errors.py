"""RFC 6749 §5.2 (and §4.1.2, §4.1.3, §3.2): the token endpoint's refusals, exactly, never a 500, logged without secrets.

§4.1.2: codes are single use (a replay is refused and revokes what the code gave) and short-lived.
"""
from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.sso.conftest import Product, code_for, exchange, register, token
from tests.sso.tokens import bearer, introspect


def error_of(response, status: int = 400) -> str:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Cache-Control"] == "no-store"
    return response.json()["error"]


@pytest.fixture
def code(signed_in: Client, product: Product) -> tuple[str, str]:
    """(code, verifier) just issued to the product for the signed-in browser."""
    value, verifier, _params = code_for(signed_in, product)
    return value, verifier


# --- invalid_client ---------------------------------------------------------------------------------------
def test_5_2_wrong_secret_basic_is_401_invalid_client_with_www_authenticate(product: Product, code) -> None:
    response = token(
        product, secret="wrong-" + product.secret, grant_type="authorization_code", code=code[0],
        redirect_uri=product.redirect_uri, code_verifier=code[1])
    assert error_of(response, 401) == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic")
    assert exchange(product, *code).status_code == 200  # the refusal did not burn the code


def test_5_2_wrong_secret_in_the_body_is_401_invalid_client(product: Product, code) -> None:
    response = Client().post("/oidc/token/", {
        "grant_type": "authorization_code", "code": code[0], "redirect_uri": product.redirect_uri,
        "code_verifier": code[1], "client_id": product.client_id, "client_secret": "wrong"})
    assert error_of(response, 401) == "invalid_client"


def test_5_2_unknown_client_is_401_invalid_client(product: Product, code) -> None:
    raw = base64.b64encode(f"nobody:{product.secret}".encode()).decode()
    response = Client().post("/oidc/token/", {
        "grant_type": "authorization_code", "code": code[0], "redirect_uri": product.redirect_uri,
        "code_verifier": code[1]}, HTTP_AUTHORIZATION=f"Basic {raw}")
    assert error_of(response, 401) == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic")


def test_5_2_confidential_client_without_its_secret_is_401_invalid_client(product: Product, code) -> None:
    response = Client().post("/oidc/token/", {
        "grant_type": "authorization_code", "code": code[0], "redirect_uri": product.redirect_uri,
        "code_verifier": code[1], "client_id": product.client_id})
    assert error_of(response, 401) == "invalid_client"


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
                                    "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer abc", "Basic"])
def test_5_2_malformed_basic_header_is_401_invalid_client(product: Product, code, header: str) -> None:
    response = Client().post("/oidc/token/", {
        "grant_type": "authorization_code", "code": code[0], "redirect_uri": product.redirect_uri,
        "code_verifier": code[1]}, HTTP_AUTHORIZATION=header)
    assert error_of(response, 401) == "invalid_client"


# --- invalid_grant ----------------------------------------------------------------------------------------
def test_4_1_2_replayed_code_is_invalid_grant_and_revokes_what_it_gave(product: Product, code) -> None:
    first = exchange(product, *code)
    assert first.status_code == 200
    tokens = first.json()
    assert error_of(exchange(product, *code)) == "invalid_grant"
    # §4.1.2: "SHOULD revoke (when possible) all tokens previously issued based on that code".
    assert introspect(product, tokens["access_token"]) == {"active": False}
    assert Client().get("/oidc/userinfo/", **bearer(tokens["access_token"])).status_code == 401
    refreshed = token(product, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert error_of(refreshed) == "invalid_grant"


def test_4_1_2_code_redeemed_as_its_sign_in_ends_is_invalid_grant_and_gives_nothing(product: Product, code,
                                                                                   monkeypatch) -> None:
    """A logout that lands between the code's check and its tokens (a race): no token outlives it."""
    from oauth2_provider.models import AccessToken, RefreshToken
    from oauth2_provider.oauth2_validators import OAuth2Validator

    from loginsvc.sso.models import SignIn

    create = OAuth2Validator._create_refresh_token

    def logout_meanwhile(self, *args, **kwargs):
        SignIn.objects.all().delete()
        return create(self, *args, **kwargs)

    monkeypatch.setattr(OAuth2Validator, "_create_refresh_token", logout_meanwhile)
    response = exchange(product, *code)
    assert error_of(response) == "invalid_grant"
    assert response.json()["error_description"] == "the sign-in has ended"
    assert not AccessToken.objects.exists() and not RefreshToken.objects.exists()


def test_4_1_2_code_lives_60_seconds(product: Product, code) -> None:
    from oauth2_provider.models import Grant

    grant = Grant.objects.get()
    lifetime = (grant.expires - timezone.now()).total_seconds()
    assert 50 <= lifetime <= 60


def test_5_2_expired_code_is_invalid_grant(product: Product, code) -> None:
    from oauth2_provider.models import Grant

    Grant.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert error_of(exchange(product, *code)) == "invalid_grant"


def test_5_2_code_issued_to_another_client_is_invalid_grant(product: Product, code) -> None:
    other = register("admin-portal")
    response = token(other, grant_type="authorization_code", code=code[0], redirect_uri=product.redirect_uri,
                     code_verifier=code[1])
    assert error_of(response) == "invalid_grant"
    response = exchange(other, *code)
    assert error_of(response) == "invalid_grant"
    assert exchange(product, *code).status_code == 200  # the owner still can


@pytest.mark.parametrize("redirect_uri", ["https://webmail.example.test/callback/",
                                          "https://WEBMAIL.example.test/callback",
                                          "https://webmail.example.test/other", "https://evil.test/callback"])
def test_4_1_3_redirect_uri_mismatch_is_invalid_grant(product: Product, code, redirect_uri: str) -> None:
    response = token(product, grant_type="authorization_code", code=code[0], redirect_uri=redirect_uri,
                     code_verifier=code[1])
    assert error_of(response) == "invalid_grant"


def test_4_1_3_missing_redirect_uri_is_invalid_request(product: Product, code) -> None:
    """It was in the authorization request (OpenID Connect requires it there), so it is required here."""
    response = token(product, grant_type="authorization_code", code=code[0], code_verifier=code[1])
    assert error_of(response) == "invalid_request"
    assert exchange(product, *code).status_code == 200


@pytest.mark.parametrize("value", ["garbage", "x" * 255, "\u00e9t\u00e9"])
def test_5_2_unknown_code_is_invalid_grant(product: Product, value: str) -> None:
    response = token(product, grant_type="authorization_code", code=value, redirect_uri=product.redirect_uri,
                     code_verifier="v" * 50)
    assert error_of(response) == "invalid_grant"


# --- unsupported_grant_type -------------------------------------------------------------------------------
# (The device grant is offered to the mail clients' products only: tests/mailclients/test_device_grant.py.)
@pytest.mark.parametrize("grant_type", ["password", "client_credentials", "implicit", "garbage",
                                        "urn:ietf:params:oauth:grant-type:jwt-bearer", ""])
def test_5_2_other_grant_types_are_unsupported_grant_type(product: Product, user, grant_type: str) -> None:
    from tests.conftest import PASSWORD

    response = token(product, grant_type=grant_type, username=user.email, password=PASSWORD, scope="openid")
    assert error_of(response) == ("invalid_request" if grant_type == "" else "unsupported_grant_type")
    assert "access_token" not in response.json()


def test_5_2_missing_grant_type_is_invalid_request(product: Product, code) -> None:
    response = token(product, code=code[0], redirect_uri=product.redirect_uri, code_verifier=code[1])
    assert error_of(response) == "invalid_request"


# --- invalid_request --------------------------------------------------------------------------------------
def test_5_2_missing_code_is_invalid_request(product: Product, code) -> None:
    response = token(product, grant_type="authorization_code", redirect_uri=product.redirect_uri,
                     code_verifier=code[1])
    assert error_of(response) == "invalid_request"


@pytest.mark.parametrize("name", ["code", "grant_type", "redirect_uri", "code_verifier"])
def test_3_2_duplicated_parameter_is_invalid_request(product: Product, code, name: str) -> None:
    data = {"grant_type": "authorization_code", "code": code[0], "redirect_uri": product.redirect_uri,
            "code_verifier": code[1]}
    data[name] = [data[name], data[name]]
    response = Client().post("/oidc/token/", data, **product.basic())
    assert error_of(response) == "invalid_request"


@pytest.mark.parametrize("name", ["code", "code_verifier", "redirect_uri", "refresh_token", "scope"])
def test_5_2_oversized_parameter_is_400_not_500(product: Product, code, name: str) -> None:
    data = {"grant_type": "authorization_code", "code": code[0], "redirect_uri": product.redirect_uri,
            "code_verifier": code[1], name: "a" * 10240}
    response = Client().post("/oidc/token/", data, **product.basic())
    assert error_of(response) in {"invalid_request", "invalid_grant"}


def test_5_2_body_over_the_upload_limit_is_400_not_500(product: Product) -> None:
    response = Client().post("/oidc/token/", {"grant_type": "authorization_code", "code": "a" * 70000},
                             **product.basic())
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("body", [b"grant_type=authorization_code&code=\xff\xfe\xfd",
                                  b"grant_type=authorization_code&code=%ff%fe",
                                  b"grant_type=authorization_code&code=a%00b", b"\xff\xfe=\xff",
                                  b"grant_type=authorization_code&code=" + "\u00e9".encode("latin-1")])
def test_5_2_invalid_utf8_body_is_400_not_500(product: Product, body: bytes) -> None:
    response = Client().post("/oidc/token/", body, content_type="application/x-www-form-urlencoded",
                             **product.basic())
    assert error_of(response) in {"invalid_request", "invalid_grant"}


def test_5_2_json_body_is_invalid_request(product: Product, code) -> None:
    response = Client().post("/oidc/token/", {"grant_type": "authorization_code", "code": code[0]},
                             content_type="application/json", **product.basic())
    assert 400 <= response.status_code < 500


def test_3_2_get_is_refused(product: Product, code) -> None:
    response = Client().get("/oidc/token/", {"grant_type": "authorization_code", "code": code[0]},
                            **product.basic())
    assert response.status_code in (400, 405)


# --- every refusal logged, nothing secret in the log -----------------------------------------------------
def test_5_2_refusals_are_logged_without_code_secret_verifier_or_token(product: Product, code, caplog) -> None:
    tokens = exchange(product, *code).json()
    with caplog.at_level("INFO", logger="loginsvc.audit"):
        exchange(product, *code)                                                       # replay
        token(product, secret="wrong-secret-" + "y" * 30, grant_type="authorization_code", code=code[0],
              redirect_uri=product.redirect_uri, code_verifier=code[1])                # bad secret
        token(product, grant_type="refresh_token", refresh_token=tokens["refresh_token"] + "x")
        token(product, grant_type="password", username="ann", password="hunter2hunter2")
    refused = [r for r in caplog.records if r.getMessage() == "sso: refused"]
    assert [r.error for r in refused] == ["invalid_grant", "invalid_client", "invalid_grant",
                                          "unsupported_grant_type"]
    assert all(r.endpoint == "token" for r in refused)
    assert all(r.client_id in {"webmail", ""} for r in refused)
    for secret in (code[0], code[1], product.secret, "wrong-secret-", tokens["refresh_token"],
                   tokens["access_token"], "hunter2hunter2"):
        assert secret not in caplog.text


@pytest.mark.parametrize("asked, expected", [("https://evil.example.test/", None),
                                             (None, ["https://api.example.test/"])])
def test_rfc8707_resources_of_the_code_hold_at_its_redemption(signed_in: Client, product: Product, asked, expected) -> None:
    """RFC 8707 §2.2: the token request may narrow the granted resources, never widen them; without
    one, the token keeps the grant's (the code is spent in the same transaction that checks them)."""
    from oauth2_provider.models import AccessToken

    from tests.sso.conftest import code_for, exchange

    code, verifier, _params = code_for(signed_in, product, resource="https://api.example.test/")
    response = exchange(product, code, verifier, **({"resource": asked} if asked else {}))
    if expected is None:
        assert response.status_code == 400 and response.json()["error"] == "invalid_target"
        assert response["Content-Type"] == "application/json" and response["Cache-Control"] == "no-store"
        assert not AccessToken.objects.exists()
    else:
        assert response.status_code == 200, response.content
        assert AccessToken.objects.get().resource == expected
