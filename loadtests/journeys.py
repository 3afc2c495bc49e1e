"""The weighted users of a load run: people signing in to mail products, and those products' back ends (Locust user classes).

Three journeys, weighted as a mail platform sees them (most requests are a product asking "who is this?"):
- PortalUser (weight 3): opens the login page, posts the form with its CSRF token, follows the redirect;
  then a product's back end asks /api/session with the browser's cookies on every page view; now and
  then the person signs out centrally and comes back as a new browser (a new pin: new sessions follow
  the current share), and rarely types a wrong password (pacing.WrongPasswordBudget keeps those within
  the brute-force limits, from their own loopback source addresses).
- MfaUser (weight 1): a PortalUser whose account has an authenticator app: after the password, the second
  step's page and its form with the app's code (computed with pyotp from the derived secret). A code works
  once per account per 30-s step, so the accounts are taken through pacing.CodeSteps; when all of this
  process's are used in the current step, that sign-in is a password-only one.
- ProductUser (weight 1): the OpenID Connect code flow with PKCE for a product (authorize → login →
  code), then the product's back end redeems the code, calls userinfo and introspection, refreshes the
  token, and the person signs out through the product (RP-initiated logout) and signs in again.
Back-end calls go out without cookies, as a server's would, so the router places each by the share.
Two journeys run apart, one user each at a fixed rate: password recovery for the mail delay (loadtests/recovery.py)
and IMAP logins to Dovecot (loadtests/imap.py).
Request names (`login`, `mfa`, `session`, `userinfo`, …) are what `--slo name:p99<…` and the reports use.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests
from locust import task
from locust.clients import HttpSession
from locust.contrib.fasthttp import FastHttpSession, FastHttpUser

from loadtests import pacing, run_settings

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
SCOPE = "openid email"
SECOND_STEP = "/login/mfa/"


def csrf_of(page: str) -> str | None:
    match = CSRF_INPUT.search(page)
    return match.group(1) if match else None


def pkce() -> tuple[str, str]:
    """RFC 7636: a verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connections from one loopback address, so the service counts wrong passwords per (simulated) client."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


class Browser(FastHttpUser):
    """A person's browser (cookies kept: the session and the router's pin) and its pacing."""

    abstract = True
    network_timeout = connection_timeout = 30.0
    account = ""

    def on_start(self) -> None:
        run = run_settings.current(self.environment)
        self.run = run
        self.pacing = pacing.Pacing(run.scenario.users, run.rate_at, run.started)
        self.account = secrets.choice(run.password_accounts)

    def wait_time(self) -> float:
        return self.pacing.wait()

    def context(self) -> dict[str, Any]:
        lag = self.pacing.lag()
        return {} if lag is None else {"lag": lag}

    def new_browser(self) -> None:
        """Forget every cookie: the next request is a new visitor (a new pin, chosen by the current share)."""
        self.client.cookiejar.clear()
        self.account = secrets.choice(self.run.password_accounts)

    def sign_in(self, next_url: str = "") -> str | None:
        """Login page, form with its CSRF token, then the redirect it answers with: `home` is followed,
        `next` returned for the caller to follow (None: the sign-in failed)."""
        location = self.password_step(next_url)
        if location is not None and not next_url:
            self.client.get(location, name="home")
        return location

    def password_step(self, next_url: str) -> str | None:
        """The login page and its form: where the service sends the browser next (None: refused)."""
        query = "?" + urlencode({"next": next_url}) if next_url else ""
        with self.client.get("/login/" + query, name="login-page", catch_response=True) as page:
            token = csrf_of(page.text or "") if page.status_code == 200 else None
            if token is None:
                page.failure(f"login page: {page.status_code}, no CSRF token")
                return None
        form = {"csrfmiddlewaretoken": token, "username": self.account,
                "password": self.run.passwords[self.account], "next": next_url}
        with self.client.post("/login/", data=form, name="login", allow_redirects=False, catch_response=True) as done:
            location = done.headers.get("Location") if done.status_code == 302 else None
            if location is None:
                done.failure(f"login: {done.status_code}, expected 302")
                return None
        return location

    def sign_out(self) -> None:
        """Central logout: the confirmation form's POST with its CSRF token."""
        page = self.client.get("/logout/", name="logout-page")
        token = csrf_of(page.text or "")
        self.client.post("/logout/", data={"csrfmiddlewaretoken": token or "", "next": ""}, name="logout",
                         allow_redirects=False)

    def wrong_password(self) -> bool:
        """One wrong password, within the budget, from its own source address; a 401 is the expected answer."""
        taken = self.run.wrong_passwords.take()
        if taken is None:
            return False
        account, source = taken
        session = HttpSession(self.host, self.environment.events.request, user=self)
        session.mount("http://", SourceAddressAdapter(source))
        try:
            page = session.get("/login/", name="login-page")
            form = {"csrfmiddlewaretoken": csrf_of(page.text) or "", "username": account,
                    "password": "not the password " + secrets.token_hex(4), "next": ""}
            with session.post("/login/", data=form, name="wrong-password", allow_redirects=False,
                              catch_response=True) as refused:
                if refused.status_code == 401:
                    refused.success()
                else:
                    refused.failure(f"wrong password: {refused.status_code}, expected 401 (429: the spread is wrong)")
        finally:
            session.close()
        return True


class PortalUser(Browser):
    """Signs in, then a product's back end checks the session on every page view."""

    weight = 3

    def on_start(self) -> None:
        super().on_start()
        self.wrong_password()   # a typo before the real password, when the budget has room for one
        self.signed_in = self.sign_in() is not None

    @task(20)
    def page_view(self) -> None:
        if not self.signed_in:
            self.signed_in = self.sign_in() is not None
            return
        self.client.get("/api/session", name="session")

    @task(1)
    def come_back_as_new_browser(self) -> None:
        self.sign_out()
        self.new_browser()
        self.signed_in = self.sign_in() is not None

    @task(1)
    def mistype(self) -> None:
        if not self.wrong_password():
            self.page_view()


class MfaUser(PortalUser):
    """A PortalUser whose sign-ins take the second step with an authenticator app's code."""

    weight = 1

    def sign_in(self, next_url: str = "") -> str | None:
        taken = self.run.codes.take()
        if taken is None:   # every account of this process has sent this step's code: a password sign-in
            self.account = secrets.choice(self.run.password_accounts)
            return super().sign_in(next_url)
        self.account, step = taken
        second = self.password_step(next_url)
        location = None if second is None else self.code_step(second, step)
        if location is not None and not next_url:
            self.client.get(location, name="home")
        return location

    def code_step(self, page_url: str, step: int) -> str | None:
        """The second step's page (its form's CSRF token), then the form with the code of `step` (the one
        reserved: a request slowed past the step's end still counts, the service accepts ±1 step)."""
        asked = urlsplit(page_url).path == SECOND_STEP
        with self.client.get(page_url, name="login-mfa-page", catch_response=True) as page:
            token = csrf_of(page.text or "") if asked and page.status_code == 200 else None
            if token is None:
                page.failure(f"login-mfa-page: {page.status_code}, no CSRF token" if asked else
                             f"login-mfa-page: {self.account}'s password step went to {page_url}, no second step")
                return None
        form = {"csrfmiddlewaretoken": token, "method": "totp",
                "code": pacing.CodeSteps.code(self.run.totp_secrets[self.account], step),
                "next": parse_qs(urlsplit(page_url).query).get("next", [""])[0]}
        with self.client.post(SECOND_STEP, data=form, name="mfa", allow_redirects=False,
                              catch_response=True) as done:
            location = done.headers.get("Location") if done.status_code == 302 else None
            if location is None or urlsplit(location).path.startswith("/login/"):   # back to the start: expired
                done.failure(f"mfa: {done.status_code} {location or ''}, expected 302 on "
                             "(401: a wrong or replayed code)")
                return None
        return location


class ProductUser(Browser):
    """A product's user: the code flow, then the product's back end on userinfo, introspection and refresh."""

    weight = 1

    def on_start(self) -> None:
        super().on_start()
        self.backend = FastHttpSession(self.host, self.environment.events.request, user=self,
                                       network_timeout=30.0, connection_timeout=30.0)
        self.backend.cookiejar.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # a server keeps no cookies
        self.tokens: dict[str, str] = {}
        self.code_flow()

    def code_flow(self) -> bool:
        """authorize → (login page, form) → authorize → code at the callback → token (back end)."""
        product = self.run.product
        verifier, challenge = pkce()
        state = secrets.token_urlsafe(12)
        query = urlencode({"response_type": "code", "client_id": product.client_id, "redirect_uri": product.redirect_uri,
                           "scope": SCOPE, "state": state, "nonce": secrets.token_urlsafe(12),
                           "code_challenge": challenge, "code_challenge_method": "S256"})
        url = "/oidc/authorize/?" + query
        for _ in range(3):
            response = self.client.get(url, name="authorize", allow_redirects=False)
            location = response.headers.get("Location") or ""
            if response.status_code != 302:
                return False
            target = urljoin(self.host + url, location)
            if target.startswith(product.redirect_uri):
                params = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
                if params.get("state") != state or "code" not in params:
                    return False
                return self.redeem(params["code"], verifier)
            path = urlsplit(target)
            signed_in = self.sign_in(next_url=parse_qs(path.query).get("next", [""])[0]) if path.path == "/login/" else None
            if signed_in is None:
                return False
            url = signed_in
        return False

    def backend_post(self, path: str, name: str, data: dict[str, str]) -> Any:
        """The product's back end, authenticated as its confidential client (HTTP Basic)."""
        product = self.run.product
        return self.backend.post(path, name=name, auth=(product.client_id, product.client_secret), data=data)

    def redeem(self, code: str, verifier: str) -> bool:
        response = self.backend_post("/oidc/token/", "token", {
            "grant_type": "authorization_code", "code": code, "redirect_uri": self.run.product.redirect_uri,
            "code_verifier": verifier})
        if response.status_code != 200:
            return False
        self.tokens = response.json()
        return True

    @task(10)
    def userinfo(self) -> None:
        if not self.tokens and not self.code_flow():
            return
        self.backend.get("/oidc/userinfo/", name="userinfo",
                         headers={"Authorization": f"Bearer {self.tokens['access_token']}"})

    @task(5)
    def introspect(self) -> None:
        if not self.tokens:
            return
        self.backend_post("/oidc/introspect/", "introspect",
                          {"token": self.tokens["access_token"], "token_type_hint": "access_token"})

    @task(2)
    def refresh(self) -> None:
        if not self.tokens:
            return
        response = self.backend_post("/oidc/token/", "refresh",
                                     {"grant_type": "refresh_token", "refresh_token": self.tokens["refresh_token"]})
        if response.status_code == 200:
            self.tokens = response.json()
        else:
            self.tokens = {}

    @task(1)
    def sign_out_through_product(self) -> None:
        """RP-initiated logout with the ID token as hint, then a new browser signs in again."""
        if self.tokens:
            product = self.run.product
            query = urlencode({"id_token_hint": self.tokens["id_token"], "client_id": product.client_id,
                               "post_logout_redirect_uri": product.post_logout_uri})
            self.client.get("/oidc/logout/?" + query, name="rp-logout", allow_redirects=False)
        self.tokens = {}
        self.new_browser()
        self.code_flow()
