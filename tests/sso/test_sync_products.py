"""`manage.py sync_products`: products registered from TOML or JSON, idempotently; bad files exit 2 with one line."""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import check_password, identify_hasher
from django.core.management import call_command
from django.core.management.base import CommandError

from deploy.demo_products import PRODUCTS, products_toml
from loginsvc.sso.products import CLIENT_ID
from tests import plugin
from tests.sso.conftest import Product as ProductHandle
from tests.sso.conftest import code_for, exchange
from tests.support import fresh_database, manage, node_env

SECRET = "product-secret-for-the-sync-tests-" + "q" * 16
OTHER_SECRET = "another-product-secret-of-enough-length-" + "z" * 8
ENV = "SYNC_TEST_SECRET"


def toml_value(value: Any) -> str:
    """A TOML value for the test files (JSON strings, arrays and booleans are TOML too)."""
    return json.dumps(value)


def toml_of(products: list[dict[str, Any]]) -> str:
    lines = []
    for product in products:
        lines.append("[[product]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in product.items()]
        lines.append("")
    return "\n".join(lines)


def webmail(**changes: Any) -> dict[str, Any]:
    entry = {"client_id": "webmail", "name": "Webmail", "type": "confidential", "first_party": True,
             "redirect_uris": ["https://webmail.example.test/callback"],
             "post_logout_redirect_uris": ["https://webmail.example.test/"],
             "backchannel_logout_uri": "https://webmail.example.test/backchannel-logout",
             "secret_env": ENV}
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def admin(**changes: Any) -> dict[str, Any]:
    return webmail(**{"client_id": "admin", "name": "Admin portal", "redirect_uris": ["https://admin.example.test/cb"],
                      "post_logout_redirect_uris": None, "backchannel_logout_uri": None, **changes})


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(ENV, SECRET)
    return SECRET


def write(tmp_path: Path, products: list[dict[str, Any]], suffix: str = ".toml") -> Path:
    path = tmp_path / f"products{suffix}"
    text = toml_of(products) if suffix == ".toml" else json.dumps({"product": products})
    path.write_text(text)
    return path


def sync(path: Path, *options: str) -> list[str]:
    out = io.StringIO()
    call_command("sync_products", str(path), *options, stdout=out, stderr=io.StringIO())
    return out.getvalue().splitlines()


def refused(path: Path) -> str:
    """The one message of a refused file (exit status 2)."""
    with pytest.raises(CommandError) as raised:
        sync(path)
    assert raised.value.returncode == 2
    message = str(raised.value)
    assert "\n" not in message, message
    return message


def application(client_id: str) -> Any:
    from oauth2_provider.models import Application

    return Application.objects.select_related("product").get(client_id=client_id)


# --- registering --------------------------------------------------------------------------------------------
def test_a_product_is_registered_as_the_file_says(db: None, secret_env: str, tmp_path: Path) -> None:
    assert sync(write(tmp_path, [webmail(), admin(first_party=False)])) == ["webmail: created", "admin: created"]
    app = application("webmail")
    assert (app.name, app.client_type, app.authorization_grant_type, app.algorithm, app.skip_authorization) == (
        "Webmail", "confidential", "authorization-code", "RS256", True)
    assert app.redirect_uris == "https://webmail.example.test/callback"
    assert app.post_logout_redirect_uris == "https://webmail.example.test/"
    assert app.product.backchannel_logout_uri == "https://webmail.example.test/backchannel-logout"
    assert app.hash_client_secret and identify_hasher(app.client_secret).algorithm == "sso_sha256"
    assert check_password(SECRET, app.client_secret) and SECRET not in app.client_secret
    other = application("admin")
    assert (other.skip_authorization, other.post_logout_redirect_uris, other.product.backchannel_logout_uri) == (
        False, "", "")


def test_an_unchanged_file_changes_nothing(db: None, secret_env: str, tmp_path: Path) -> None:
    path = write(tmp_path, [webmail(), admin()])
    sync(path)
    before = {a: (application(a).updated, application(a).client_secret) for a in ("webmail", "admin")}
    assert sync(path) == ["webmail: unchanged", "admin: unchanged"]
    assert {a: (application(a).updated, application(a).client_secret) for a in ("webmail", "admin")} == before


def test_json_and_toml_are_the_same_registration(db: None, secret_env: str, tmp_path: Path) -> None:
    sync(write(tmp_path, [webmail(), admin()], ".toml"))
    assert sync(write(tmp_path, [webmail(), admin()], ".json")) == ["webmail: unchanged", "admin: unchanged"]


def test_a_changed_entry_is_updated_naming_the_fields_never_the_values(
        db: None, secret_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync(write(tmp_path, [webmail()]))
    monkeypatch.setenv(ENV, OTHER_SECRET)
    changed = webmail(redirect_uris=["https://webmail.example.test/callback", "https://mail.example.test/cb"],
                      backchannel_logout_uri="https://mail.example.test/logout", first_party=False)
    lines = sync(write(tmp_path, [changed]))
    assert lines == ["webmail: updated (backchannel_logout_uri, redirect_uris, secret, skip_authorization)"]
    app = application("webmail")
    assert app.redirect_uris == "https://webmail.example.test/callback https://mail.example.test/cb"
    assert app.product.backchannel_logout_uri == "https://mail.example.test/logout"
    assert check_password(OTHER_SECRET, app.client_secret) and not check_password(SECRET, app.client_secret)


def test_require_mfa_is_registered_and_updated(db: None, secret_env: str, tmp_path: Path) -> None:
    sync(write(tmp_path, [webmail(require_mfa=True), admin()]))
    assert (application("webmail").product.require_mfa, application("admin").product.require_mfa) == (True, False)
    assert sync(write(tmp_path, [webmail(), admin()])) == ["webmail: updated (require_mfa)", "admin: unchanged"]
    assert application("webmail").product.require_mfa is False


def test_secret_from_a_file_relative_to_the_product_file(db: None, tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "webmail").write_text(SECRET + "\n")
    assert sync(write(tmp_path, [webmail(secret_env=None, secret_file="secrets/webmail")])) == ["webmail: created"]
    assert check_password(SECRET, application("webmail").client_secret)
    assert sync(write(tmp_path, [webmail(secret_env=None, secret_file="secrets/webmail")])) == ["webmail: unchanged"]


def test_a_public_product_has_no_usable_secret(db: None, secret_env: str, tmp_path: Path) -> None:
    sync(write(tmp_path, [webmail()]))
    lines = sync(write(tmp_path, [webmail(type="public", secret_env=None, first_party=False)]))
    assert lines == ["webmail: updated (client_type, secret, skip_authorization)"]
    app = application("webmail")
    assert app.client_type == "public" and not check_password(SECRET, app.client_secret)
    assert sync(write(tmp_path, [webmail(type="public", secret_env=None, first_party=False)])) == ["webmail: unchanged"]


def test_products_not_in_the_file_are_kept_unless_pruned(db: None, secret_env: str, tmp_path: Path) -> None:
    from loginsvc.sso.models import Product

    sync(write(tmp_path, [webmail(), admin()]))
    only_webmail = write(tmp_path, [webmail()])
    assert sync(only_webmail) == ["webmail: unchanged", "kept, not in the file: admin (--prune deletes them)"]
    assert application("admin")
    assert sync(only_webmail, "--prune") == ["webmail: unchanged", "admin: deleted (not in the file, --prune)"]
    assert [p.application.client_id for p in Product.objects.all()] == ["webmail"]


def test_the_demo_products_file_of_make_up_registers(db: None, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_CLIENT_SECRET", SECRET)
    path = tmp_path / "demo-products.toml"
    path.write_text(products_toml("http://127.0.0.1:8100/"))
    assert sync(path) == [f"{client_id}: created" for client_id in PRODUCTS]
    assert application("quarantine").product.backchannel_logout_uri == "http://127.0.0.1:8100/quarantine/backchannel-logout"


def test_a_synced_product_completes_the_code_flow_with_its_secret(secret_env: str, tmp_path: Path,
                                                                    signed_in: Any) -> None:
    sync(write(tmp_path, [webmail()]))
    handle = ProductHandle("webmail", SECRET, "https://webmail.example.test/callback", application("webmail"))
    code, verifier, _params = code_for(signed_in, handle)   # first party: no consent page
    assert exchange(handle, code, verifier).status_code == 200
    code, verifier, _params = code_for(signed_in, handle)
    assert exchange(ProductHandle("webmail", OTHER_SECRET, handle.redirect_uri, None), code, verifier).status_code == 401


# --- bad files ----------------------------------------------------------------------------------------------
BAD_ENTRIES = [
    # (changes to the second entry, key named, words of the problem)
    ({"client_secret": SECRET}, "client_secret", "secrets never go in the product file"),
    ({"secret": SECRET}, "secret", "secrets never go in the product file"),
    ({"scopes": ["openid"]}, "scopes", "unknown key"),
    ({"client_id": None}, "client_id", "missing"),
    ({"client_id": "ad min"}, "client_id", "A-Z a-z 0-9"),
    ({"client_id": "x" * 101}, "client_id", "1 to 100"),
    ({"client_id": 7}, "client_id", "non-empty string"),
    ({"name": None}, "name", "missing"),
    ({"name": ""}, "name", "non-empty string"),
    ({"type": "private"}, "type", "'confidential' or 'public'"),
    ({"type": None}, "type", "missing"),
    ({"first_party": "yes"}, "first_party", "true or false"),
    ({"redirect_uris": None}, "redirect_uris", "missing"),
    ({"redirect_uris": []}, "redirect_uris", "non-empty list"),
    ({"redirect_uris": "https://admin.example.test/cb"}, "redirect_uris", "list"),
    ({"redirect_uris": ["/cb"]}, "redirect_uris[0]", "absolute URI"),
    ({"redirect_uris": ["admin.example.test/cb"]}, "redirect_uris[0]", "absolute URI"),
    ({"redirect_uris": ["https://admin.example.test/cb#top"]}, "redirect_uris[0]", "fragment"),
    ({"redirect_uris": ["https://admin.example.test/cb#"]}, "redirect_uris[0]", "fragment"),
    ({"redirect_uris": ["https://*.example.test/cb"]}, "redirect_uris[0]", "wildcards"),
    ({"redirect_uris": ["https://admin.example.test/cb", "ftp://admin.example.test/"]}, "redirect_uris[1]", "must be https"),
    ({"redirect_uris": ["https://user@admin.example.test/cb"]}, "redirect_uris[0]", "user information"),
    ({"redirect_uris": ["https://admin.example.test/c b"]}, "redirect_uris[0]", "without spaces"),
    ({"redirect_uris": ["https://admin.example.test:port/cb"]}, "redirect_uris[0]", "not a URI"),
    ({"redirect_uris": ["HTTPS://admin.example.test/cb"]}, "redirect_uris[0]", "absolute URI"),
    ({"redirect_uris": [7]}, "redirect_uris[0]", "non-empty string"),
    ({"redirect_uris": ["https://admin.example.test/cb"] * 2}, "redirect_uris", "twice"),
    ({"post_logout_redirect_uris": ["https://admin.example.test/#x"]}, "post_logout_redirect_uris[0]", "fragment"),
    ({"post_logout_redirect_uris": "https://admin.example.test/"}, "post_logout_redirect_uris", "list"),
    ({"backchannel_logout_uri": "https://elsewhere.example.test/logout"}, "backchannel_logout_uri", "§2.2"),
    ({"backchannel_logout_uri": ["https://admin.example.test/logout"]}, "backchannel_logout_uri", "non-empty string"),
    ({"backchannel_logout_uri": "https://admin.example.test/logout#f"}, "backchannel_logout_uri", "fragment"),
    ({"secret_env": None}, "secret_env", "missing: a confidential product needs secret_env or secret_file"),
    ({"secret_file": "x"}, "secret_file", "not both"),
    ({"type": "public", "first_party": False}, "secret_env", "public product has no client secret"),
    ({"type": "public", "first_party": False, "secret_env": None, "secret_file": "x"}, "secret_file",
     "public product has no client secret"),
    # RFC 8252 §8.6: any app can present a public client's id, so its codes must need the person's consent
    ({"type": "public", "secret_env": None}, "first_party", "a public product cannot be first-party"),
    ({"secret_env": "NOT_SET_ANYWHERE_42"}, "secret_env", "NOT_SET_ANYWHERE_42 is not set"),
    ({"secret_env": "BAD-NAME"}, "secret_env", "not an environment variable name"),
    ({"secret_env": "SHORT_SECRET"}, "secret_env", "shorter than 32 characters"),
    ({"secret_env": None, "secret_file": "missing-file"}, "secret_file", "cannot read"),
    ({"secret_env": None, "secret_file": "short-secret"}, "secret_file", "shorter than 32 characters"),
    ({"client_id": "webmail"}, "client_id", "also used by product #1"),
    ({"require_mfa": "yes"}, "require_mfa", "must be true or false"),
]


@pytest.mark.parametrize("changes,key,problem", BAD_ENTRIES, ids=[f"{k}-{p[:20]}" for _c, k, p in BAD_ENTRIES])
@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_a_bad_entry_is_one_message_naming_entry_and_key_and_nothing_is_written(
        db: None, secret_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        changes: dict[str, Any], key: str, problem: str, suffix: str) -> None:
    monkeypatch.setenv("SHORT_SECRET", "too-short-" + "s" * 10)
    (tmp_path / "short-secret").write_text("too-short\n")
    bad = admin(**changes)
    message = refused(write(tmp_path, [webmail(), bad], suffix))
    client_id = bad.get("client_id")
    label = f"product #2 ({client_id})" if isinstance(client_id, str) and CLIENT_ID.fullmatch(client_id) else "product #2"
    assert f"{label}: {key}: " in message and problem in message, message
    assert SECRET not in message and "too-short" not in message
    assert not _applications()


def _applications() -> list[str]:
    from oauth2_provider.models import Application

    return list(Application.objects.values_list("client_id", flat=True))


@pytest.mark.parametrize("uri,allowed", [
    ("http://webmail.example.test/cb", False),
    ("https://webmail.example.test/cb", True),
    ("http://127.0.0.1:8100/cb", True),
    ("http://localhost:8100/cb", True),
    ("http://[::1]:8100/cb", True),
    ("http://127.0.0.2/cb", False),
    ("http://localhost.example.test/cb", False),
])
def test_production_allows_http_for_loopback_hosts_only(db: None, secret_env: str, tmp_path: Path, settings: Any,
                                                        uri: str, allowed: bool) -> None:
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ALLOWED_REDIRECT_URI_SCHEMES": ["https"]}
    path = write(tmp_path, [webmail(redirect_uris=[uri], post_logout_redirect_uris=None, backchannel_logout_uri=None)])
    if allowed:
        assert sync(path) == ["webmail: created"]
    else:
        message = refused(path)
        assert "product #1 (webmail): redirect_uris[0]: must be https (http only for 127.0.0.1" in message, message


def test_locally_http_is_allowed_anywhere(db: None, secret_env: str, tmp_path: Path) -> None:
    uri = "http://webmail.example.test/cb"
    assert sync(write(tmp_path, [webmail(redirect_uris=[uri], backchannel_logout_uri=None)])) == ["webmail: created"]


def test_rfc8252_8_6_a_first_party_product_turned_public_is_refused_and_kept_as_it_was(
        db: None, secret_env: str, tmp_path: Path) -> None:
    """Silent codes (no consent) to a client anyone can impersonate on a loopback redirect URI: never."""
    sync(write(tmp_path, [webmail()]))
    path = write(tmp_path, [webmail(type="public", secret_env=None)])
    message = refused(path)
    assert message.startswith(f"{path}: product #1 (webmail): first_party: a public product cannot be first-party")
    app = application("webmail")
    assert (app.client_type, app.skip_authorization) == ("confidential", True)


@pytest.mark.parametrize("production", [False, True])
def test_asvs_2_5_4_the_load_suites_product_is_refused_in_production(
        db: None, tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch, production: bool) -> None:
    """The very file `python -m loadtests run` writes: a first-party client with a secret shared by every run."""
    from loadtests.prepare import product_toml

    monkeypatch.setenv("LOADTEST_CLIENT_SECRET", SECRET)
    settings.PRODUCTION = production
    path = tmp_path / "products.toml"
    path.write_text(product_toml())
    if not production:
        assert sync(path) == ["loadtest: created"]
        return
    message = refused(path)
    assert message.startswith(f"{path}: product #1 (loadtest): client_id: the load suites product: refused in "
                              "production (LOGINSVC_MODE=production)"), message
    assert not _applications()


@pytest.mark.parametrize("name,text,problem", [
    ("products.yaml", "product: []", "must end in .toml or .json"),
    ("products.toml", "[[product]\nclient_id = 1", "not valid TOML"),
    ("products.json", '{"product": [', "not valid JSON"),
    ("products.json", '[{"client_id": "webmail"}]', "the top level must be an object"),
    ("products.json", '{"product": [{"client_id": "a", "client_id": "b"}]}', "'client_id' appears twice"),
    ("products.json", '{"products": []}', "unknown top-level key 'products'"),
    ("products.json", "{}", "no 'product' list"),
    ("products.json", '{"product": {"client_id": "webmail"}}', "'product' must be a list"),
    ("products.json", '{"product": ["webmail"]}', "product #1: must be a table"),
    ("products.toml", 'client_secret = "abc"\n', "client_secret: secrets never go in the product file"),
    ("products.json", b"\xff\xfe{}", "not UTF-8"),
])
def test_a_bad_file_is_one_message_naming_the_file(db: None, tmp_path: Path, name: str, text: str | bytes,
                                                    problem: str) -> None:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    message = refused(path)
    assert message.startswith(f"{path}: ") and problem in message, message


def test_a_missing_file_is_one_message(db: None, tmp_path: Path) -> None:
    assert "cannot read the file (No such file or directory)" in refused(tmp_path / "absent.toml")


def test_a_bad_file_leaves_the_registrations_as_they_were(db: None, secret_env: str, tmp_path: Path) -> None:
    sync(write(tmp_path, [webmail(), admin()]))
    before = {a: (application(a).updated, application(a).redirect_uris) for a in ("webmail", "admin")}
    refused(write(tmp_path, [webmail(redirect_uris=["https://new.example.test/cb"], backchannel_logout_uri=None),
                             admin(type="odd")]))
    with pytest.raises(CommandError):
        call_command("sync_products", str(write(tmp_path, [webmail(name="")])), "--prune", stdout=io.StringIO())
    assert {a: (application(a).updated, application(a).redirect_uris) for a in ("webmail", "admin")} == before


def test_the_secret_is_never_printed_or_logged(db: None, secret_env: str, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    out, err = io.StringIO(), io.StringIO()
    path = write(tmp_path, [webmail()])
    for _ in range(2):
        call_command("sync_products", str(path), stdout=out, stderr=err)
    assert SECRET not in out.getvalue() + err.getvalue() + caplog.text


# --- the real command, in its own process -------------------------------------------------------------------
@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A node's environment with a migrated scratch database, as `make up` runs the command."""
    var = tmp_path_factory.mktemp("sync-node") / "var"
    var.mkdir()
    env = node_env(var, plugin.REDIS.url, **{ENV: SECRET})
    fresh_database(env)
    yield env


def test_the_command_exits_2_with_one_line_on_stderr_and_never_shows_the_secret(
        node: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path, [webmail(), admin()])
    first = manage(node, "sync_products", str(path))
    again = manage(node, "sync_products", str(path))
    assert (first.stdout, again.stdout) == ("webmail: created\nadmin: created\n", "webmail: unchanged\nadmin: unchanged\n")
    leaked = write(tmp_path, [webmail(client_secret=SECRET)], ".json")
    bad = manage(node, "sync_products", str(leaked), check=False)
    assert bad.returncode == 2, bad
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "product #1 (webmail): client_secret: secrets never go in the product file" in lines[0]
    short = manage(dict(node, **{ENV: "short"}), "sync_products", str(path), check=False)
    assert short.returncode == 2 and "secret_env: the secret in the environment variable" in short.stderr
    for result in (first, again, bad, short):
        assert SECRET not in result.stdout + result.stderr
        assert "short" not in result.stdout


def test_the_command_without_a_file_is_a_usage_error(node: dict[str, str]) -> None:
    result = manage(node, "sync_products", check=False)
    assert result.returncode == 2 and "file" in result.stderr
