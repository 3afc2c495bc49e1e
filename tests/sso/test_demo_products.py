"""The demo products (deploy/demo_products): a real process, its arguments, pages, sessions and bad requests."""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urljoin

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from deploy.demo_products import PRODUCTS, products_toml
from deploy.demo_products.backchannel import EVENT
from deploy.demo_products.sessions import SessionStore
from deploy.node import http_ok, manage, wait_for
from tests.conftest import create_user_in
from tests.plugin import free_port
from tests.support import ROOT

SECRET = "demo-client-secret-for-the-tests-0123456789"


class DemoApp:
    """`python -m deploy.demo_products` on a free port, in its own process group."""

    def __init__(self, issuer: str, log_dir: Path, *extra: str, port: int = 0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer, self.extra = issuer, extra
        self.log_path = log_dir / f"demo-products-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "DemoApp":
        env = dict(os.environ, DEMO_CLIENT_SECRET=SECRET)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deploy.demo_products", "--listen", f"127.0.0.1:{self.port}",
                 "--issuer", self.issuer, *self.extra], cwd=ROOT, env=env, stdout=log, stderr=log,
                start_new_session=True)

        def up() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log()
            return http_ok(self.url + "/healthz")
        wait_for(up, 30, "demo products /healthz", interval=0.1)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def offline_demo(tmp_path: Path) -> Iterator[DemoApp]:
    """The demo products with an issuer nobody listens on (the provider "starts later")."""
    app = DemoApp(f"http://127.0.0.1:{free_port()}", tmp_path).start()
    yield app
    app.stop()


def run_cli(*args: str, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DEMO_CLIENT_SECRET"}
    if secret is not None:
        env["DEMO_CLIENT_SECRET"] = secret
    return subprocess.run([sys.executable, "-m", "deploy.demo_products", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


# -- command line --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "secret", "named"), [
    (["--listen", "127.0.0.1", "--issuer", "http://127.0.0.1:8000"], SECRET, "--listen"),
    (["--listen", "127.0.0.1:99999", "--issuer", "http://127.0.0.1:8000"], SECRET, "--listen"),
    (["--issuer", "ftp://127.0.0.1:8000"], SECRET, "--issuer"),
    (["--issuer", "http://127.0.0.1:8000/?x=1"], SECRET, "--issuer"),
    (["--listen", "127.0.0.1:8100"], SECRET, "--issuer"),
    (["--issuer", "http://127.0.0.1:8000", "--unknown"], SECRET, "--unknown"),
    (["--issuer", "http://127.0.0.1:8000"], None, "DEMO_CLIENT_SECRET"),
    (["--issuer", "http://127.0.0.1:8000"], "", "DEMO_CLIENT_SECRET"),
])
def test_bad_arguments_exit_2_with_one_line_naming_the_argument(args: list[str], secret: str | None,
                                                                  named: str) -> None:
    result = run_cli(*args, secret=secret)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_products_file_is_the_sync_products_contract_without_the_secret() -> None:
    text = products_toml("http://127.0.0.1:8100/")
    products = tomllib.loads(text)["product"]
    assert [p["client_id"] for p in products] == list(PRODUCTS) == ["webmail", "admin-portal", "quarantine"]
    for product in products:
        cid = product["client_id"]
        assert product == {
            "client_id": cid, "name": PRODUCTS[cid], "type": "confidential", "first_party": True,
            "redirect_uris": [f"http://127.0.0.1:8100/{cid}/callback"],
            "post_logout_redirect_uris": [f"http://127.0.0.1:8100/{cid}/"],
            "backchannel_logout_uri": f"http://127.0.0.1:8100/{cid}/backchannel-logout",
            "secret_env": "DEMO_CLIENT_SECRET",
        }
    assert "secret =" not in text and SECRET not in text


def test_make_ups_products_file_requires_a_second_factor_of_the_admin_portal_only(tmp_path: Path) -> None:
    """What `make up` registers: webmail and quarantine take a password alone, the admin portal asks for more."""
    from deploy.local import demo_products_file
    from loginsvc.sso.products import load_file

    path = tmp_path / "demo-products.toml"
    path.write_text(demo_products_file("http://127.0.0.1:8100/"))
    specs = load_file(path, {"DEMO_CLIENT_SECRET": SECRET})
    assert {spec.client_id: spec.require_mfa for spec in specs} == {
        "webmail": False, "admin-portal": True, "quarantine": False}


# -- sessions ------------------------------------------------------------------------------------------------
def user(sub: str, sid: str) -> dict[str, str]:
    return {"sub": sub, "sid": sid, "email": f"{sub}@example.test", "name": sub, "id_token": "x"}


def test_back_channel_ends_the_sessions_of_that_sid_only_and_of_that_product_only() -> None:
    store = SessionStore()
    ann_1 = store.sign_in(store.create("webmail"), user("ann", "sid-1"))
    ann_2 = store.sign_in(store.create("webmail"), user("ann", "sid-2"))       # Ann on another device
    ann_admin = store.sign_in(store.create("admin-portal"), user("ann", "sid-1"))
    bob = store.sign_in(store.create("webmail"), user("bob", "sid-3"))
    assert store.end_matching("webmail", "sid-1", "ann") == 1
    assert store.get("webmail", ann_1.key) is None
    assert store.get("webmail", ann_2.key) and store.get("admin-portal", ann_admin.key) and store.get("webmail", bob.key)
    assert store.end_matching("webmail", "sid-2", "bob") == 0                  # sid and sub must both match
    assert store.end_matching("webmail", None, "ann") == 1                     # no sid: every session of sub
    assert store.get("webmail", ann_2.key) is None and store.get("webmail", bob.key)
    assert store.end_matching("webmail", None, None) == 0


def test_signing_in_replaces_the_cookie_value_and_a_state_is_good_once() -> None:
    store = SessionStore()
    anonymous = store.create("webmail")
    store.add_pending(anonymous, "state-1", "nonce", "verifier")
    assert store.take_pending(anonymous, "state-2") is None
    assert store.take_pending(anonymous, "state-1").nonce == "nonce"
    assert store.take_pending(anonymous, "state-1") is None
    signed_in = store.sign_in(anonymous, user("ann", "sid-1"))
    assert signed_in.key != anonymous.key and signed_in.csrf != anonymous.csrf
    assert store.get("webmail", anonymous.key) is None
    assert store.get("admin-portal", signed_in.key) is None                    # a cookie is per product


def test_sessions_file_keeps_signed_in_sessions_and_seen_jtis_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    store = SessionStore(path)
    kept = store.sign_in(store.create("quarantine"), user("ann", "sid-1"))
    store.create("webmail")                                                    # anonymous: not written
    assert store.first_use("quarantine", "jti-1") and not store.first_use("quarantine", "jti-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = SessionStore(path)
    assert again.get("quarantine", kept.key).user["email"] == "ann@example.test"
    assert again.signed_in_count("webmail") == 0
    assert not again.first_use("quarantine", "jti-1") and again.first_use("webmail", "jti-1")
    path.write_text("{not json")
    assert SessionStore(path).signed_in_count("quarantine") == 0               # unreadable: start empty


# -- the process, with no provider reachable -----------------------------------------------------------------
def test_index_health_and_product_pages_without_a_provider(offline_demo: DemoApp) -> None:
    index = requests.get(offline_demo.url + "/", timeout=5)
    assert index.status_code == 200 and all(f'href="/{cid}/"' in index.text for cid in PRODUCTS)
    assert requests.get(offline_demo.url + "/healthz", timeout=5).status_code == 200
    for cid, name in PRODUCTS.items():
        page = requests.get(f"{offline_demo.url}/{cid}/", timeout=5)
        assert page.status_code == 200 and name in page.text and "not signed in" in page.text
        assert f'href="/{cid}/login"' in page.text
        assert all(f'href="/{other}/"' in page.text for other in PRODUCTS if other != cid)
        assert page.headers["Cache-Control"] == "no-store"
    assert requests.get(offline_demo.url + "/nowhere/", timeout=5).status_code == 404
    assert requests.get(offline_demo.url + "/webmail/nowhere", timeout=5).status_code == 404
    assert requests.get(offline_demo.url + "/webmail/logout", timeout=5).status_code == 405
    assert requests.post(offline_demo.url + "/webmail/login", timeout=5).status_code == 405


def test_provider_errors_and_unknown_states_are_400_pages_never_500(offline_demo: DemoApp) -> None:
    cases = {
        "?error=login_required&state=whatever": "login_required",
        "?error=access_denied&error_description=%3Cscript%3Ex%3C%2Fscript%3E": "access_denied",
        "?code=abc&state=never-issued": "state",
        "?code=abc&state=never-issued&iss=http%3A%2F%2Fevil.example.test": "another issuer",
        "?code=abc": "state",
        "": "state",
    }
    for query, shown in cases.items():
        page = requests.get(f"{offline_demo.url}/webmail/callback{query}", timeout=5)
        assert page.status_code == 400, (query, page.text)
        assert shown in page.text and "<script>" not in page.text
    assert "error=login_required" in offline_demo.log()


def test_login_while_the_provider_is_down_is_a_503_and_sign_out_without_a_session_is_harmless(
        offline_demo: DemoApp) -> None:
    login = requests.get(offline_demo.url + "/admin-portal/login", allow_redirects=False, timeout=30)
    assert login.status_code == 503 and login.headers["Retry-After"]
    logout = requests.post(offline_demo.url + "/admin-portal/logout", data={"csrf": "x"}, allow_redirects=False,
                           timeout=5)
    assert logout.status_code == 303 and logout.headers["Location"] == "/admin-portal/"
    # A logout token cannot be checked without the JWKS: 503, so the provider's outbox tries again later.
    token = requests.post(offline_demo.url + "/webmail/backchannel-logout", data={"logout_token": "a.b.c"}, timeout=30)
    assert token.status_code == 503 and token.json()["error"] == "temporarily_unavailable"
    assert token.headers["Cache-Control"] == "no-store"
    not_a_form = requests.post(offline_demo.url + "/webmail/backchannel-logout", json={"logout_token": "x"}, timeout=5)
    assert not_a_form.status_code == 400 and not_a_form.json()["error"] == "invalid_request"
    huge = requests.post(offline_demo.url + "/webmail/backchannel-logout", data={"logout_token": "x" * 20000},
                         timeout=5)
    assert huge.status_code == 400 and huge.json()["error"] == "invalid_request"
    assert SECRET not in offline_demo.log()


# -- end to end: real nodes of both clusters, the real router, the demo products -----------------------------
class FormParser(HTMLParser):
    """The forms of a page: action, method and every named input's value (enough to submit like a browser)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get").lower(), "fields": {}})
        elif tag in ("input", "button") and self.forms and a.get("name"):
            if tag == "input" or a.get("type") == "submit":
                self.forms[-1]["fields"].setdefault(a["name"], a.get("value", ""))


def forms_of(response: requests.Response) -> list[dict[str, Any]]:
    parser = FormParser()
    parser.feed(response.text)
    return parser.forms


def submit(browser: requests.Session, page: requests.Response, **values: str) -> requests.Response:
    """Fill in and submit the page's only form, following redirects like a browser."""
    (form,) = forms_of(page)
    return browser.request(form["method"], urljoin(page.url, form["action"]), data={**form["fields"], **values},
                           timeout=15)


@dataclass
class Provider:
    """Two nodes (blue, green) behind the router; the issuer is the router's origin."""

    issuer: str
    env: dict[str, str]
    var: Path
    nodes: list[Any]


@pytest.fixture
def provider(stack: Any, scratch: Path) -> Iterator[Provider]:
    from tests.canary.conftest import Router

    router = Router(scratch, [], {})
    issuer = f"http://127.0.0.1:{router.port}"
    env = {"LOGINSVC_OIDC_ISSUER": issuer, "LOGINSVC_TRUSTED_PROXY_HOPS": "1", "LOGINSVC_OIDC_KEY_RELOAD_SECONDS": "1",
           "LOGINSVC_BACKCHANNEL_MAX_BACKOFF_SECONDS": "2"}
    blue, green = stack("blue-1", cluster="blue", **env), stack("green-1", cluster="green", **env)
    create_user_in(blue, EMAIL, USER_PASSWORD)
    config = scratch / "router.toml"
    config.write_text("".join(f'[[clusters]]\nname = "{n.cluster}"\nnodes = [{{name = "{n.name}", '
                              f'address = "127.0.0.1:{n.port}"}}]\n' for n in (blue, green))
                      + "[health_check]\ninterval = 0.1\ntimeout = 0.3\nunhealthy_threshold = 2\nhealthy_threshold = 3\n")
    router.args = ["--config", str(config)]
    router.start()
    yield Provider(issuer, blue.env, scratch / "var", [blue, green])
    router.stop(signal.SIGKILL)


@pytest.fixture
def demo(provider: Provider, tmp_path: Path) -> Iterator[DemoApp]:
    """The demo products, registered with `manage.py sync_products` from the file `make up` would write."""
    app = DemoApp(provider.issuer, tmp_path, "--sessions-file", str(tmp_path / "demo-sessions.json"))
    products = tmp_path / "demo-products.toml"
    products.write_text(products_toml(app.url))
    result = manage(dict(provider.env, DEMO_CLIENT_SECRET=SECRET), "sync_products", str(products), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    app.start()
    yield app
    app.stop()


EMAIL, USER_PASSWORD = "ann.sso@example.test", "a password typed into the central page"


def status_of(page: requests.Response) -> str:
    match = re.search(r'<p id="status">([^<]*)</p>', page.text)
    assert match, page.text[:500]
    return match.group(1)


def sign_in_silently(browser: requests.Session, demo: DemoApp, client_id: str) -> requests.Response:
    page = browser.get(f"{demo.url}/{client_id}/login", timeout=15)
    assert page.url == f"{demo.url}/{client_id}/", (page.url, page.text[:300])
    assert all(not r.url.startswith(demo.issuer + "/login/") for r in page.history), "a password was asked"
    return page


def test_sign_in_once_signed_in_everywhere_sign_out_anywhere_signed_out_everywhere(
        provider: Provider, demo: DemoApp) -> None:
    browser = requests.Session()
    webmail = browser.get(f"{demo.url}/webmail/", timeout=5)
    assert status_of(webmail) == "not signed in"

    login_page = browser.get(f"{demo.url}/webmail/login", timeout=15)      # -> the provider's own sign-in page
    assert login_page.url.startswith(provider.issuer + "/login/") and 'type="password"' in login_page.text
    back = submit(browser, login_page, username=EMAIL, password=USER_PASSWORD)
    assert back.url == f"{demo.url}/webmail/" and status_of(back).startswith(f"signed in as {EMAIL}"), back.text[:500]

    admin = sign_in_silently(browser, demo, "admin-portal")                 # the central session: no password
    assert status_of(admin).startswith(f"signed in as {EMAIL}")
    quarantine = sign_in_silently(browser, demo, "quarantine")
    sids = set(re.findall(r": signed in sub=\S+ sid=(\S+)", demo.log()))
    assert len(sids) == 1 and "None" not in sids, demo.log()                # one central session, one sid

    signed_out = submit(browser, quarantine)                                # Sign out (the demo's CSRF token)
    assert signed_out.url.startswith(f"{demo.url}/quarantine/?state="), (signed_out.url, signed_out.text[:300])
    assert status_of(signed_out) == "not signed in"
    hops = [r.headers.get("Location", "") for r in signed_out.history]
    assert any(h.startswith(provider.issuer + "/oidc/logout/?") and "id_token_hint=" in h for h in hops), hops

    def everywhere_signed_out() -> bool:
        return all(status_of(browser.get(f"{demo.url}/{cid}/", timeout=5)) == "not signed in"
                   for cid in ("webmail", "admin-portal"))
    wait_for(everywhere_signed_out, 20, "back-channel logout of webmail and admin-portal", interval=0.2)
    assert len(re.findall(r"back-channel logout sid=\S+ .* ended 1 session", demo.log())) == 2, demo.log()
    silent = browser.get(f"{demo.url}/webmail/login?prompt=none", timeout=15)  # the central session is gone too
    assert silent.status_code == 400 and "login_required" in silent.text, (silent.url, silent.text[:300])
    again = browser.get(f"{demo.url}/webmail/login", timeout=15)
    assert again.url.startswith(provider.issuer + "/login/")
    assert SECRET not in demo.log() and USER_PASSWORD not in demo.log()


def sign(claims: dict[str, Any], key: Any, alg: str = "RS256", kid: str | None = None) -> str:
    header = {"alg": alg, "typ": "logout+jwt", "kid": kid if kid is not None else key.thumbprint()}
    return jwt.encode(header, claims, key, algorithms=[alg])


def unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'logout+jwt'})}.{part(claims)}."


def test_back_channel_logout_tokens_are_checked_against_the_providers_real_keys(
        provider: Provider, demo: DemoApp) -> None:
    """§2.6: every rule refused on its own (the session survives each), then the good token ends the
    session, and the same token again (a retried delivery) is acknowledged without ending anything more."""
    browser = requests.Session()
    submit(browser, browser.get(f"{demo.url}/webmail/login", timeout=15), username=EMAIL, password=USER_PASSWORD)
    sub, sid = re.search(r"webmail: signed in sub=(\S+) sid=(\S+)", demo.log()).groups()
    ring = json.loads((provider.var / "oidc-keys.json").read_text())
    key = RSAKey.import_key(ring["keys"][-1]["private_key_pem"])
    assert key.thumbprint() in requests.get(provider.issuer + "/oidc/jwks/", timeout=5).text
    now = int(time.time())
    good = {"iss": provider.issuer, "aud": "webmail", "iat": now, "jti": "jti-" + secrets.token_hex(8),
            "sub": sub, "sid": sid, "events": {EVENT: {}}}
    stranger = RSAKey.generate_key(2048)
    bad = {
        "wrong issuer": sign({**good, "iss": "http://127.0.0.1:1"}, key),
        "another product": sign({**good, "aud": "admin-portal"}, key),
        "no iat": sign({k: v for k, v in good.items() if k != "iat"}, key),
        "iat an hour ahead": sign({**good, "iat": now + 3600}, key),
        "expired": sign({**good, "exp": now - 3600}, key),
        "no jti": sign({k: v for k, v in good.items() if k != "jti"}, key),
        "no events": sign({k: v for k, v in good.items() if k != "events"}, key),
        "another event": sign({**good, "events": {"http://schemas.openid.net/event/other": {}}}, key),
        "neither sid nor sub": sign({k: v for k, v in good.items() if k not in ("sid", "sub")}, key),
        "a nonce (an ID token)": sign({**good, "nonce": "n"}, key),
        "alg none": unsigned(good),
        "HS256 with the public modulus": sign(good, OctKey.import_key(key.as_dict()["n"]), "HS256", key.thumbprint()),
        "another key, same kid": sign(good, stranger, kid=key.thumbprint()),
        "another key, unknown kid": sign(good, stranger),
        "another payload, same signature": ".".join(
            part if i != 1 else sign({**good, "sub": "someone-else"}, key).split(".")[1]
            for i, part in enumerate(sign(good, key).split("."))),
        "not a JWT": "not-a-jwt",
    }
    for case, token in bad.items():
        answer = requests.post(f"{demo.url}/webmail/backchannel-logout", data={"logout_token": token}, timeout=15)
        assert answer.status_code == 400, (case, answer.status_code, answer.text)
        assert answer.json()["error"] == "invalid_request", case
        assert status_of(browser.get(f"{demo.url}/webmail/", timeout=5)).startswith("signed in as"), case

    token = sign(good, key)
    answer = requests.post(f"{demo.url}/webmail/backchannel-logout", data={"logout_token": token}, timeout=15)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store", answer.text
    assert status_of(browser.get(f"{demo.url}/webmail/", timeout=5)) == "not signed in"
    replay = requests.post(f"{demo.url}/webmail/backchannel-logout", data={"logout_token": token}, timeout=15)
    assert replay.status_code == 200  # a retried delivery: acknowledged, and it ends nothing more
    sub_only = sign({**{k: v for k, v in good.items() if k != "sid"}, "jti": "jti-2"}, key)
    assert requests.post(f"{demo.url}/webmail/backchannel-logout", data={"logout_token": sub_only},
                         timeout=15).status_code == 200

    # A key rotated in after the demo cached the JWKS: its unknown kid makes the demo fetch the JWKS again.
    rotated = RSAKey.generate_key(2048)
    ring["keys"].append({"private_key_pem": rotated.as_pem(private=True).decode(), "active_after": now - 1})
    (provider.var / ".oidc-keys.new").write_text(json.dumps(ring))
    os.replace(provider.var / ".oidc-keys.new", provider.var / "oidc-keys.json")
    wait_for(lambda: all(rotated.thumbprint() in requests.get(node.url + "/oidc/jwks/", timeout=5).text
                         for node in provider.nodes), 20, "the rotated key in every node's JWKS", interval=0.2)
    answer = requests.post(f"{demo.url}/webmail/backchannel-logout",
                           data={"logout_token": sign({**good, "jti": "jti-3"}, rotated)}, timeout=15)
    assert answer.status_code == 200, answer.text

    # A demo configured with another spelling of the issuer refuses the provider's discovery document.
    other = DemoApp(provider.issuer.replace("127.0.0.1", "localhost"), demo.log_path.parent).start()
    try:
        assert requests.get(other.url + "/webmail/login", allow_redirects=False, timeout=30).status_code == 503
        assert "issuer is" in other.log()
    finally:
        other.stop()


def test_a_logout_while_the_products_are_down_reaches_them_when_they_are_back(provider: Provider, demo: DemoApp) -> None:
    """The provider's outbox retries; the demo's sessions file keeps the sessions across its restart."""
    browser = requests.Session()
    submit(browser, browser.get(f"{demo.url}/webmail/login", timeout=15), username=EMAIL, password=USER_PASSWORD)
    sign_in_silently(browser, demo, "admin-portal")
    demo.stop()
    central = browser.get(provider.issuer + "/logout/", timeout=15)                 # the central sign-out page
    assert submit(browser, central).status_code == 200
    time.sleep(3)                                                                   # deliveries fail meanwhile
    sessions = SessionStore(Path(demo.extra[1]))
    assert sessions.signed_in_count("webmail") == sessions.signed_in_count("admin-portal") == 1
    before = len(demo.log())
    demo.start()

    def everywhere_signed_out() -> bool:
        return all(status_of(browser.get(f"{demo.url}/{cid}/", timeout=5)) == "not signed in"
                   for cid in ("webmail", "admin-portal"))
    wait_for(everywhere_signed_out, 30, "back-channel logout after the restart", interval=0.2)
    assert len(re.findall(r"back-channel logout sid=\S+ .* ended 1 session", demo.log()[before:])) == 2
