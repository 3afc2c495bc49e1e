"""Who may use the admin API: the admin token (bearer or the dashboard's sign-in form), the dashboard's
revocable sessions, and a per-address back-off for wrong tokens.

- The token is compared in constant time (SHA-256 digests, so not even its length shows) and re-read when
  its file changes (secret.RotatingSecret): the old token and every session cookie signed under it stop
  working at once, because the cookies' HMAC key is derived from the token.
- A session is live while the shared record says so (ops_sessions.py): `/logout` ends it on every router,
  `POST /api/sign-out-all` (or `canary sign-out-all`) ends them all. When the record cannot be read, no
  cookie is trusted (503; the bearer token, which needs no record, still works).
- Wrong tokens are counted per client address (an IPv6 client per /64): from the THROTTLE rule's
  threshold on, the address waits, doubling per further failure up to a cap (429 with Retry-After, and
  no token is checked meanwhile); failures are forgotten a window after the last. The counts are this
  router's (bounded to CAPACITY addresses, oldest forgotten first). The client address is the peer, or
  from a peer in `trusted_proxies` the X-Forwarded-For entry `trusted_hops` from the right, as on the
  proxy port (canary/dataplane/trusted_proxies.py): entries further left are the client's own claim. Failed sign-ins are
  logged with that address, never with the token tried.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from canary.admin import dashboard
from canary.admin.ops_sessions import SessionRecord, StoreUnavailable, record_for
from canary.config import secret
from canary.config.settings import Config
from canary.dataplane.trusted_proxies import ProxyTrust
from canary.discovery.state import FileStore, RedisStore
from sharedlib.networks import canonical_address, forwarded_client
from sharedlib.throttle_rules import Rule   # the login service's back-off rule, without its stores

log = logging.getLogger("canary.admin")
Answer = tuple[int, str, bytes, dict[str, str]]   # status, content type, body, extra headers


def json_answer(doc: Any, status: int = 200) -> Answer:
    """An admin API answer: `doc` as JSON."""
    return status, "application/json", json.dumps(doc).encode(), {}

HTML = "text/html; charset=utf-8"
# The 5th wrong token from one address locks it 2 s, the 6th 4 s, ... up to 15 minutes; forgotten 15 minutes
# after the last failure.
THROTTLE = Rule(threshold=5, base_seconds=2, max_seconds=900, window_seconds=900, sliding=True)
CAPACITY = 10_000
T = TypeVar("T")


class AdminError(Exception):
    """An answer other than 200 from the admin listener: status, message, extra headers (Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class AuthHost(Protocol):
    """What the admin's authentication reads of the router process (server.RouterProcess)."""

    cfg: Config
    store: FileStore | RedisStore


class SignInThrottle:
    """Failures per client address and the lock they earn (THROTTLE), on a monotonic clock."""

    def __init__(self, rule: Rule = THROTTLE, capacity: int = CAPACITY) -> None:
        self.rule = rule
        self.capacity = capacity
        self._failures: OrderedDict[str, tuple[int, float, float]] = OrderedDict()   # count, last, locked until

    @staticmethod
    def unit(address: str) -> str:
        """What is counted: the address, or an IPv6 address's /64 (one host usually holds a whole /64)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address
        return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else address

    def _entry(self, unit: str, now: float) -> tuple[int, float, float]:
        entry = self._failures.get(unit)
        if entry is None or now - entry[1] > self.rule.window_seconds:
            self._failures.pop(unit, None)
            return 0, now, now
        return entry

    def wait(self, address: str, now: float) -> int:
        """Seconds this address must still wait before a token of its is checked (0: none)."""
        return max(0, math.ceil(self._entry(self.unit(address), now)[2] - now))

    def failed(self, address: str, now: float) -> tuple[int, int]:
        """Count a wrong token: (failures in the window, seconds the address is now locked)."""
        unit = self.unit(address)
        count = self._entry(unit, now)[0] + 1
        lock = self.rule.lock_seconds(count)
        self._failures.pop(unit, None)
        self._failures[unit] = (count, now, now + lock)
        while len(self._failures) > self.capacity:
            self._failures.popitem(last=False)
        return count, lock


def client_address(peer: str, forwarded_for: bytes | None, trust: ProxyTrust, hops: int) -> str:
    """The peer, or from a trusted proxy the X-Forwarded-For entry `hops` from the right (with fewer entries,
    the left-most: the one a trusted proxy wrote about its own peer); always a canonical address or
    "unknown", so a log line cannot be forged through the header."""
    own = canonical_address(peer) or "unknown"
    if hops <= 0 or not forwarded_for or not trust.trusted(peer):
        return own
    return forwarded_client(own, forwarded_for.decode("latin-1"), hops)


class OpsAuth:
    """The admin token, the dashboard's sessions and the back-off, for one admin listener."""

    def __init__(self, app: AuthHost | None, token: str, secure_cookie: bool = False) -> None:
        self.app = app
        self.secure = secure_cookie
        self.source = secret.admin_token_source(token)
        self._use(token)
        self.throttle = SignInThrottle()
        self._record: SessionRecord | None = None
        self._trust: ProxyTrust | None = None

    def _use(self, token: str) -> None:
        self._token = token
        self._digest = hashlib.sha256(token.encode()).digest()
        self.sessions = dashboard.Sessions(token.encode(), self.secure)

    def _current(self) -> dashboard.Sessions:
        """The sessions' keys under the token in use now (a rotated token re-keys them: every cookie ends)."""
        token = self.source.current()
        if token != self._token:
            self._use(token)
            log.warning("admin token rotated: the old token and every dashboard session signed in with it "
                        "no longer work")
        return self.sessions

    def token_ok(self, sent: bytes) -> bool:
        self._current()
        return hmac.compare_digest(hashlib.sha256(sent).digest(), self._digest)

    @property
    def record(self) -> SessionRecord:
        if self._record is None:
            assert self.app is not None, "sessions need the router's shared state"
            self._record = record_for(self.app.store)
        return self._record

    def client(self, peer: str, headers: dict[bytes, bytes]) -> str:
        """The address a request is counted and logged under (client_address, with the router's settings)."""
        assert self.app is not None, "only the router's own listener asks"
        if self._trust is None:
            self._trust = ProxyTrust(self.app.cfg.trusted_proxies)
        return client_address(peer, headers.get(b"x-forwarded-for"), self._trust, self.app.cfg.trusted_hops)

    async def _shared(self, step: Awaitable[T], more: dict[str, str] | None = None) -> T:
        try:
            return await step
        except StoreUnavailable as e:
            log.error("ops session record unreachable: %s", e)
            raise AdminError(503, "the ops session record (the router's shared state) is unreachable: use the "
                                  "bearer token until it is back", more) from None

    async def session(self, cookie: str | None) -> dashboard.Session | None:
        """The cookie's session if its HMAC, expiry, epoch and id are all still good."""
        found = self._current().parse(cookie, time.time())
        if found is None or not await self._shared(self.record.live(found.sid, found.epoch)):
            return None
        return found

    def _gate(self, client: str) -> int:
        return self.throttle.wait(client, time.monotonic())

    def _wrong(self, client: str, how: str) -> None:
        count, lock = self.throttle.failed(client, time.monotonic())
        log.warning("admin sign-in refused from %s: wrong token (%s; failure %d from this address%s)", client, how,
                    count, f", locked {lock} s" if lock else "")

    async def authorized(self, method: str, headers: dict[bytes, bytes], peer: str) -> bool:
        """The bearer token, or a live dashboard session (with its CSRF token on anything but GET)."""
        scheme, _, tok = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer":
            client = self.client(peer, headers)
            wait = self._gate(client)
            if wait:
                raise AdminError(429, f"too many wrong admin tokens from this address: retry in {wait} s",
                                 {"Retry-After": str(wait)})
            if self.token_ok(tok.strip()):
                return True
            self._wrong(client, "bearer token")
            return False
        session = await self.session(dashboard.cookie_of(headers.get(b"cookie", b"")))
        if session is None:
            return False
        if method in ("GET", "HEAD"):
            return True
        sent = headers.get(b"x-csrf-token", b"").decode("latin-1")
        if not (self.sessions.csrf_ok(session.cookie, sent) and dashboard.same_origin(headers.get(b"origin"),
                                                                                      headers.get(b"host"))):
            raise AdminError(403, "missing or bad CSRF token (reload the dashboard)")
        return True

    async def page(self, method: str, path: str, headers: dict[bytes, bytes], body: bytes, peer: str) -> Answer:
        """GET / (the dashboard, or its sign-in form), POST /login and POST /logout."""
        secure = dashboard.SECURITY_HEADERS
        cookie = dashboard.cookie_of(headers.get(b"cookie", b""))
        if path == "/" and method == "GET":
            session = await self.session(cookie)
            if session is None:
                return 200, HTML, dashboard.login_page(), secure
            return 200, HTML, dashboard.dashboard_page(self.sessions.csrf(session.cookie)), secure
        if method != "POST" or path == "/":
            raise AdminError(405, f"no such endpoint: {method} {path}")
        if not dashboard.same_origin(headers.get(b"origin"), headers.get(b"host")):
            raise AdminError(403, "cross-origin form post refused")
        client = self.client(peer, headers)
        if path == "/logout":
            cleared = {"Set-Cookie": self.sessions.set_cookie("", 0)}
            session = await self.session(cookie)
            if session is not None:
                await self._shared(self.record.end(session.sid, session.expires), cleared)
                log.info("dashboard sign-out from %s", client)
            return 303, "text/plain", b"", {"Location": "/", **cleared, **secure}
        wait = self._gate(client)
        if wait:
            page = dashboard.login_page(f"Too many wrong tokens from your address: try again in {wait} s.")
            return 429, HTML, page, {"Retry-After": str(wait), **secure}
        if not self.token_ok(dashboard.form_token(body).encode()):
            self._wrong(client, "sign-in form")
            return 401, HTML, dashboard.login_page("That is not the admin token."), secure
        value = self.sessions.issue(time.time(), await self._shared(self.record.epoch()))
        log.info("dashboard sign-in from %s", client)
        return 303, "text/plain", b"", {"Location": "/", "Set-Cookie": self.sessions.set_cookie(value), **secure}

    async def sign_out_all(self, peer: str, headers: dict[bytes, bytes]) -> None:
        """End every dashboard session on every router sharing the state (a new epoch)."""
        await self._shared(self.record.end_all())
        log.warning("every ops dashboard session signed out (by %s)", self.client(peer, headers))
