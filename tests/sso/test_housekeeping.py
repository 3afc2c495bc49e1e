"""Sign-ins that no code or session can use any more are deleted; live ones are kept."""
from __future__ import annotations

import time
from datetime import timedelta

from django.utils import timezone

from loginsvc.sso import housekeeping
from loginsvc.sso.models import SignIn
from tests.sso.conftest import code_for, exchange


def test_unredeemed_and_expired_sign_ins_go_and_live_ones_stay(signed_in, product, settings) -> None:
    code, verifier, _ = code_for(signed_in, product)
    assert exchange(product, code, verifier).status_code == 200          # a live sign-in with a token family
    live = SignIn.objects.get()
    user, app = live.user, live.application
    now = time.time()
    SignIn.objects.create(sid="never-redeemed", user=user, application=app, auth_time=int(now), code_hash="x",
                          created=timezone.now() - timedelta(minutes=15))  # past a code's and a device grant's life
    SignIn.objects.create(sid="fresh-code", user=user, application=app, auth_time=int(now), code_hash="y")
    SignIn.objects.create(sid="too-old", user=user, application=app, auth_time=int(now) - 40000,
                          token_family=live.token_family)
    assert housekeeping.stale_sign_ins() == 2
    assert set(SignIn.objects.values_list("sid", flat=True)) == {live.sid, "fresh-code"}
    housekeeping.tidy(force=True)                                          # the toolkit's clear_expired too
    assert SignIn.objects.filter(pk=live.pk).exists()
