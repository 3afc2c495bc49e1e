"""Signing-key rotation (`manage.py rotate_oidc_key`): the new key is published first, old tokens stay valid.

In-process with Django's test client against a key ring file of the test's own (LOGINSVC OIDC_KEY_FILE);
the last test rotates under two real gunicorn nodes and watches both pick the new ring up.
"""
from __future__ import annotations

import io
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from jwcrypto import jwk, jws, jwt

from loginsvc.sso import keys
from tests.sso.conftest import Product, code_for, exchange
from tests.support import LoginNode, manage

LIFETIME = 600  # LOGINSVC ACCESS_TOKEN_SECONDS (and the ID tokens') in these tests


@pytest.fixture
def ring_file(tmp_path: Path, settings: Any) -> Iterator[Path]:
    """A one-key ring of this test's own, configured as LOGINSVC_OIDC_KEY_FILE (the process cache cleared)."""
    path = tmp_path / "oidc-keys.json"
    path.write_text(keys.new_ring_text())
    settings.LOGINSVC = {**settings.LOGINSVC, "OIDC_KEY_FILE": str(path), "ACCESS_TOKEN_SECONDS": LIFETIME,
                         "OIDC_KEY_RELOAD_SECONDS": 1}
    keys.reload()
    yield path
    keys.reload()


def rotate(*options: str) -> list[str]:
    out = io.StringIO()
    call_command("rotate_oidc_key", *options, stdout=out, stderr=io.StringIO())
    return out.getvalue().splitlines()


def id_token(browser: Client, product: Product) -> str:
    code, verifier, _params = code_for(browser, product)
    response = exchange(product, code, verifier)
    assert response.status_code == 200, response.content
    return response.json()["id_token"]


def published_kids() -> list[str]:
    response = Client().get("/oidc/jwks/")
    assert response.status_code == 200
    return [key["kid"] for key in response.json()["keys"]]


def kid_of(token: str) -> str:
    unverified = jws.JWS()
    unverified.deserialize(token)
    return unverified.jose_header["kid"]


def verified_claims(token: str) -> dict[str, Any]:
    """The claims of `token` checked against the JWKS as a product fetches it now (raises if no key fits)."""
    keyset = jwk.JWKSet.from_json(Client().get("/oidc/jwks/").content)
    return json.loads(jwt.JWT(jwt=token, key=keyset, algs=["RS256"], expected_type="JWS").claims)


def ring_entries(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["keys"]


def rewrite(path: Path, entries: list[dict[str, Any]]) -> None:
    """Change the ring as another host's rotation (or the passing of time) would, and forget the cache."""
    path.write_text(keys.dump(entries))
    keys.reload()


def logout(browser: Client, hint: str, product: Product) -> Any:
    query = urlencode({"id_token_hint": hint, "post_logout_redirect_uri": f"https://{product.client_id}.example.test/",
                       "state": "bye", "client_id": product.client_id})
    return browser.get(f"/oidc/logout/?{query}")


# --- rotation ---------------------------------------------------------------------------------------------
def test_rotation_publishes_the_new_key_signs_with_it_and_old_tokens_still_verify(
        ring_file: Path, signed_in: Client, product: Product) -> None:
    old_token = id_token(signed_in, product)
    old_kid = kid_of(old_token)
    assert published_kids() == [old_kid]

    lines = rotate("--publish-seconds", "0")
    new_kid = next(k.kid for k in keys.ring().keys if k.kid != old_kid)
    assert any(line.startswith(f"signing     {new_kid}") for line in lines), lines
    assert any(line.startswith(f"retired     {old_kid}") for line in lines), lines
    assert stat.S_IMODE(ring_file.stat().st_mode) == 0o600 and len(ring_entries(ring_file)) == 2

    assert sorted(published_kids()) == sorted([old_kid, new_kid])
    new_token = id_token(signed_in, product)
    assert kid_of(new_token) == new_kid
    assert verified_claims(new_token)["aud"] == product.client_id
    assert verified_claims(old_token)["aud"] == product.client_id     # a product's session from before still checks


def test_an_old_key_id_token_is_still_an_id_token_hint_for_logout(
        ring_file: Path, signed_in: Client, product: Product) -> None:
    old_token = id_token(signed_in, product)
    rotate("--publish-seconds", "0")
    assert kid_of(id_token(signed_in, product)) != kid_of(old_token)
    response = logout(signed_in, old_token, product)
    assert response.status_code == 302, response.content[:300]
    assert response["Location"] == f"https://{product.client_id}.example.test/?state=bye"
    assert signed_in.get("/api/session").json().get("authenticated") is False


def test_with_a_publish_delay_the_new_key_is_published_before_it_signs(
        ring_file: Path, signed_in: Client, product: Product) -> None:
    old_kid = kid_of(id_token(signed_in, product))
    lines = rotate("--publish-seconds", "3600")
    new_kid = next(k.kid for k in keys.ring().keys if k.kid != old_kid)
    assert any(line.startswith(f"next        {new_kid}") for line in lines), lines
    assert any(line.startswith(f"signing     {old_kid}") for line in lines), lines
    assert sorted(published_kids()) == sorted([old_kid, new_kid])
    assert kid_of(id_token(signed_in, product)) == old_kid             # products learn the key first

    entries = ring_entries(ring_file)
    entries[-1]["active_after"] = int(time.time()) - 1                 # the delay has passed
    rewrite(ring_file, entries)
    assert kid_of(id_token(signed_in, product)) == new_kid


def test_after_a_token_lifetime_the_old_key_leaves_the_jwks_and_the_next_rotation_drops_it(
        ring_file: Path, signed_in: Client, product: Product) -> None:
    old_token = id_token(signed_in, product)
    old_kid = kid_of(old_token)
    rotate("--publish-seconds", "0")
    entries = ring_entries(ring_file)
    entries[-1]["active_after"] = int(time.time()) - LIFETIME - 1      # the new key took over a lifetime ago
    rewrite(ring_file, entries)
    new_kid = keys.ring().signing_key().kid
    assert published_kids() == [new_kid]
    with pytest.raises(jwt.JWTMissingKey):
        verified_claims(old_token)
    response = logout(signed_in, old_token, product)                   # a hint nobody can verify: refused, no 500
    assert response.status_code == 400 and "Location" not in response
    assert signed_in.get("/api/session").json().get("authenticated") is True

    lines = rotate("--publish-seconds", "0")
    kids = [keys.parse(json.dumps({"keys": [e]}), "t").keys[0].kid for e in ring_entries(ring_file)]
    assert old_kid not in kids and new_kid in kids and len(kids) == 2
    assert not any(old_kid in line for line in lines)


def test_a_retired_key_is_published_for_exactly_the_token_lifetime(ring_file: Path, settings: Any) -> None:
    settings.LOGINSVC = {**settings.LOGINSVC, "ACCESS_TOKEN_SECONDS": 100}
    first = json.loads(keys.new_ring_text(active_after=0))["keys"][0]
    second = json.loads(keys.new_ring_text(active_after=1000))["keys"][0]
    ring = keys.parse(keys.dump([first, second]), "test")
    old, new = ring.keys
    assert ring.signing_key(now=999) is old and ring.signing_key(now=1000) is new
    assert [k.kid for k in ring.published(now=1099)] == [old.kid, new.kid]
    assert [k.kid for k in ring.published(now=1100)] == [new.kid]
    assert [state for state, _key, _until in ring.states(now=500)] == ["signing", "next"]
    assert [state for state, _key, _until in ring.states(now=1050)] == ["retired", "signing"]
    assert [state for state, _key, _until in ring.states(now=1100)] == ["unpublished", "signing"]


def test_the_default_publish_delay_is_the_setting(ring_file: Path, settings: Any) -> None:
    settings.LOGINSVC = {**settings.LOGINSVC, "OIDC_KEY_PUBLISH_SECONDS": 120}
    before = time.time()
    rotate()
    assert int(before) + 120 <= ring_entries(ring_file)[-1]["active_after"] <= int(time.time()) + 120


def test_rotations_at_the_same_time_keep_every_new_key(ring_file: Path) -> None:
    threads = [threading.Thread(target=keys.rotate_file, args=(3600,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ring_entries(ring_file)) == 5                            # one file lock: none overwrote another


def test_show_oidc_keys_lists_kid_state_and_active_after(ring_file: Path) -> None:
    rotate("--publish-seconds", "3600")
    out = io.StringIO()
    call_command("show_oidc_keys", stdout=out)
    lines = out.getvalue().splitlines()
    ring = keys.ring()
    assert [line.split()[:2] for line in lines] == [["signing", ring.keys[0].kid], ["next", ring.keys[1].kid]]
    assert f"active_after {ring.keys[1].active_after} (" in lines[1] and "BEGIN" not in out.getvalue()


# --- where rotation is refused ------------------------------------------------------------------------------
def test_a_ring_from_the_environment_is_rotated_in_the_secret_store(
        ring_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(keys.ENV_KEY, keys.new_ring_text())
    before = ring_file.read_text()
    with pytest.raises(CommandError) as raised:
        rotate("--publish-seconds", "0")
    assert raised.value.returncode == 2
    assert str(raised.value).startswith("LOGINSVC_OIDC_PRIVATE_KEY: ") and "rotate the secret in your secret store" in str(raised.value)
    assert ring_file.read_text() == before


def test_a_negative_publish_delay_is_refused(ring_file: Path) -> None:
    with pytest.raises(CommandError) as raised:
        rotate("--publish-seconds", "-1")
    assert raised.value.returncode == 2 and "--publish-seconds" in str(raised.value)


def ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


BAD_RINGS: list[tuple[str, Callable[[], str] | None]] = [
    ("not a key ring", lambda: "this is not json"),
    ("not a key ring", lambda: '{"keys": []}'),
    ("not a key ring", lambda: '{"keys": [{"private_key_pem": "x", "active_after": "soon"}]}'),
    ("not an RSA private key", lambda: keys.dump([{"private_key_pem": "-----BEGIN junk", "active_after": 0}])),
    ("must be an RSA private key", lambda: keys.dump([{"private_key_pem": ec_pem(), "active_after": 0}])),
    ("cannot read", None),                                              # the file is missing (see below)
]


@pytest.mark.parametrize("problem,content", BAD_RINGS, ids=[f"{i}-{p}" for i, (p, _c) in enumerate(BAD_RINGS)])
def test_a_bad_key_file_is_improperly_configured_naming_the_setting(
        ring_file: Path, problem: str, content: Callable[[], str] | None) -> None:
    text = None if content is None else content()
    if text is None:
        ring_file.unlink()
    else:
        ring_file.write_text(text)
    keys.reload()
    with pytest.raises(ImproperlyConfigured) as raised:
        keys.ring()
    assert str(raised.value).startswith("LOGINSVC_OIDC_KEY_FILE") and problem in str(raised.value), raised.value
    assert "BEGIN" not in str(raised.value)                             # no key material in the message
    if text is None:
        return                                                          # rotating creates it (next test)
    with pytest.raises(CommandError) as refused:
        rotate("--publish-seconds", "0")
    assert refused.value.returncode == 2 and str(refused.value).startswith("LOGINSVC_OIDC_KEY_FILE")
    assert ring_file.read_text() == text                                # left as it was


def test_rotating_a_file_that_does_not_exist_yet_creates_the_first_ring(ring_file: Path) -> None:
    ring_file.unlink()
    keys.reload()
    lines = rotate("--publish-seconds", "600")
    assert stat.S_IMODE(ring_file.stat().st_mode) == 0o600 and len(ring_entries(ring_file)) == 1
    assert [line.split()[0] for line in lines[1:]] == ["signing"]       # nothing to publish ahead of: signs now
    assert keys.ring().signing_key().active_after <= time.time()


# --- every process picks a change up ------------------------------------------------------------------------
def same_size(text: str, size: int = 12000) -> str:
    assert len(text) < size
    return text.rstrip("\n") + " " * (size - len(text)) + "\n"


def test_a_changed_ring_is_seen_within_the_reload_interval_even_with_the_same_mtime_size_and_inode(
        ring_file: Path) -> None:
    ring_file.write_text(same_size(keys.new_ring_text()))
    keys.reload()
    old = keys.ring()
    before = ring_file.stat()
    with ring_file.open("r+") as handle:                                # in place: same inode
        handle.write(same_size(keys.new_ring_text()))
    os.utime(ring_file, ns=(before.st_atime_ns, before.st_mtime_ns))   # and the mtime put back
    after = ring_file.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert keys.ring() is old                                           # cached until the interval is up
    time.sleep(1.05)                                                    # OIDC_KEY_RELOAD_SECONDS = 1
    assert keys.ring().signing_key().kid != old.signing_key().kid


def test_a_ring_that_goes_bad_while_running_keeps_the_last_good_one(
        ring_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = keys.ring()
    ring_file.write_text("{ half a file")
    time.sleep(1.05)
    with caplog.at_level(logging.ERROR, logger="loginsvc.sso.keys"):
        assert keys.ring() is good
    assert "still signing with the last good one" in caplog.text and "BEGIN" not in caplog.text
    rotated = keys.new_ring_text()
    ring_file.write_text(rotated)
    time.sleep(1.05)
    assert keys.ring().signing_key().kid == keys.parse(rotated, "t").signing_key().kid


def test_every_real_node_picks_the_rotation_up_within_the_reload_interval(
        stack: Callable[..., LoginNode], scratch: Path) -> None:
    ring = scratch / "shared-oidc-keys.json"
    ring.write_text(keys.new_ring_text())
    env = {"LOGINSVC_OIDC_KEY_FILE": str(ring), "LOGINSVC_OIDC_KEY_RELOAD_SECONDS": "1"}
    nodes = [stack("blue-1", "blue", **env), stack("green-1", "green", **env)]

    def kids(node: LoginNode) -> list[str]:
        response = requests.get(node.url + "/oidc/jwks/", timeout=5)
        response.raise_for_status()
        return [key["kid"] for key in response.json()["keys"]]

    assert [len(kids(node)) for node in nodes] == [1, 1]
    result = manage(nodes[0].env, "rotate_oidc_key", "--publish-seconds", "0")
    assert "signing" in result.stdout and "BEGIN" not in result.stdout + result.stderr
    rotated_at = time.monotonic()
    seen: dict[str, float] = {}
    while len(seen) < len(nodes) and time.monotonic() - rotated_at < 5:
        for node in nodes:
            if node.name not in seen and len(kids(node)) == 2:
                seen[node.name] = time.monotonic() - rotated_at
        time.sleep(0.1)
    assert sorted(seen) == ["blue-1", "green-1"], seen
    assert max(seen.values()) < 1 + 1.0, seen                          # the reload interval, plus a poll
