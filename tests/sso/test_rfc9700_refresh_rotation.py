"""RFC 9700 §4.14.2 (and RFC 6749 §6, OpenID Connect Core §12.2): refresh tokens rotate, a replayed old one
revokes the whole family, and a refreshed ID token keeps the session's sid and auth_time."""
from __future__ import annotations

from datetime import timedelta

from django.test import Client, override_settings
from django.utils import timezone

from tests.sso.conftest import Product, code_for, exchange, register, token
from tests.sso.tokens import bearer, introspect, tokens_for, verify_id_token


def refresh(product: Product, value: str, **extra: str):
    return token(product, grant_type="refresh_token", refresh_token=value, **extra)


def refreshed(product: Product, value: str) -> dict:
    response = refresh(product, value)
    assert response.status_code == 200, response.content
    return response.json()


def no_retry_window(settings) -> None:
    settings.LOGINSVC = {**settings.LOGINSVC, "REFRESH_RETRY_SECONDS": 0}


def test_6_each_refresh_gives_a_new_refresh_token_and_the_old_one_is_refused(signed_in: Client, product: Product,
                                                                             settings) -> None:
    no_retry_window(settings)
    first = tokens_for(signed_in, product)
    second = refreshed(product, first["refresh_token"])
    third = refreshed(product, second["refresh_token"])
    assert len({first["refresh_token"], second["refresh_token"], third["refresh_token"]}) == 3
    assert len({first["access_token"], second["access_token"], third["access_token"]}) == 3
    assert refresh(product, second["refresh_token"]).json()["error"] == "invalid_grant"


def test_4_14_2_a_retry_by_the_same_product_within_the_window_gets_the_same_pair(signed_in: Client,
                                                                                 product: Product) -> None:
    """A back end that lost the answer (a failover) retries: the very pair the rotation issued, twice."""
    first = tokens_for(signed_in, product)
    second = refreshed(product, first["refresh_token"])
    again = refreshed(product, first["refresh_token"])
    assert again == second
    assert introspect(product, second["access_token"])["active"] is True
    assert refreshed(product, second["refresh_token"])["refresh_token"] != second["refresh_token"]


def test_4_14_2_a_retry_after_the_new_pair_was_used_is_a_replay(signed_in: Client, product: Product) -> None:
    first = tokens_for(signed_in, product)
    second = refreshed(product, first["refresh_token"])
    third = refreshed(product, second["refresh_token"])
    assert refresh(product, first["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(product, third["access_token"]) == {"active": False}


def test_4_14_2_a_retry_after_the_window_is_a_replay(signed_in: Client, product: Product, settings) -> None:
    from loginsvc.sso.models import RotationReceipt

    first = tokens_for(signed_in, product)
    second = refreshed(product, first["refresh_token"])
    RotationReceipt.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert refresh(product, first["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(product, second["access_token"]) == {"active": False}


def test_4_14_2_a_public_product_has_no_retry_window(signed_in: Client) -> None:
    """Anyone may present a public client's id: its reuse is always a replay (the mail clients' products aside:
    tests/mailclients/test_mail_tokens.py)."""
    public = register("mobile", confidential=False, first_party=False)
    public.application.skip_authorization = True
    public.application.save()
    code, verifier, _params = code_for(signed_in, public)
    first = exchange(public, code, verifier, client_id="mobile").json()
    second = token(public, grant_type="refresh_token", refresh_token=first["refresh_token"], client_id="mobile")
    assert second.status_code == 200, second.content
    replay = token(public, grant_type="refresh_token", refresh_token=first["refresh_token"], client_id="mobile")
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert replay["Cache-Control"] == "no-store"


def test_4_14_2_the_retry_answer_is_sealed_with_the_old_token(signed_in: Client, product: Product) -> None:
    """The stored answer cannot be read from the database alone: no token appears in the row."""
    from loginsvc.sso.models import RotationReceipt

    first = tokens_for(signed_in, product)
    second = refreshed(product, first["refresh_token"])
    (row,) = RotationReceipt.objects.all()
    for value in (second["access_token"], second["refresh_token"], second["id_token"], first["refresh_token"]):
        assert value not in row.sealed and value not in row.token_checksum


def test_4_14_2_replaying_an_old_refresh_token_revokes_the_family(signed_in: Client, product: Product) -> None:
    first = tokens_for(signed_in, product)
    second = refreshed(product, first["refresh_token"])
    third = refreshed(product, second["refresh_token"])
    replay = refresh(product, first["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # The newest tokens of the family stop working too: the thief and the product both lose them.
    assert refresh(product, third["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(product, third["access_token"]) == {"active": False}
    assert Client().get("/oidc/userinfo/", **bearer(third["access_token"])).status_code == 401


def test_4_14_2_replay_leaves_other_families_alone(signed_in: Client, product: Product) -> None:
    other = register("admin-portal")
    mine, theirs = tokens_for(signed_in, product), tokens_for(signed_in, other)
    refreshed(product, mine["refresh_token"])
    refresh(product, mine["refresh_token"])  # replay: revokes the webmail family only
    assert introspect(other, theirs["access_token"])["active"] is True
    assert refresh(other, theirs["refresh_token"]).status_code == 200


def test_12_2_refreshed_id_token_keeps_sid_and_auth_time(signed_in: Client, product: Product) -> None:
    first = tokens_for(signed_in, product)
    _h, before = verify_id_token(first["id_token"], product)
    again = refreshed(product, first["refresh_token"])
    _h, after = verify_id_token(again["id_token"], product)
    assert after["sid"] == before["sid"] and after["auth_time"] == before["auth_time"]
    assert after["sub"] == before["sub"] and after["iss"] == before["iss"]


def test_6_refresh_token_of_another_client_is_invalid_grant(signed_in: Client, product: Product) -> None:
    other = register("admin-portal")
    mine = tokens_for(signed_in, product)
    assert refresh(other, mine["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(product, mine["refresh_token"]).status_code == 200  # not revoked by the attempt


def test_6_wider_scope_on_refresh_is_invalid_scope(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product, scope="openid")
    response = refresh(product, mine["refresh_token"], scope="openid email")
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


def test_6_refresh_needs_client_authentication(signed_in: Client, product: Product) -> None:
    mine = tokens_for(signed_in, product)
    response = Client().post("/oidc/token/", {"grant_type": "refresh_token", "refresh_token": mine["refresh_token"],
                                              "client_id": product.client_id})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_refresh_is_bounded_by_the_central_sessions_lifetimes(signed_in: Client, product: Product,
                                                             settings) -> None:
    from oauth2_provider.models import RefreshToken

    mine = tokens_for(signed_in, product)
    with override_settings(LOGINSVC={**settings.LOGINSVC, "SESSION_IDLE_SECONDS": 60}):
        RefreshToken.objects.update(created=timezone.now() - timedelta(seconds=61))
        assert refresh(product, mine["refresh_token"]).json()["error"] == "invalid_grant"


def test_refresh_is_refused_past_the_absolute_lifetime(signed_in: Client, product: Product, settings) -> None:
    from loginsvc.sso.models import SignIn

    mine = tokens_for(signed_in, product)
    with override_settings(LOGINSVC={**settings.LOGINSVC, "SESSION_MAX_SECONDS": 3600}):
        SignIn.objects.update(auth_time=int(timezone.now().timestamp()) - 3601)
        assert refresh(product, mine["refresh_token"]).json()["error"] == "invalid_grant"
