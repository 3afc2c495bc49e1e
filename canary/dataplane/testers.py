"""Testers' pins: a one-time link that sends one browser to a chosen cluster whatever the share.

Ops make a link (`canary tester-link CLUSTER --ttl 8h`, the admin API's /api/tester-links); the shared state
keeps it (`state["testers"]`: cluster, expiry, when it was opened), so every router knows it. The link's URL
(`/_canary/tester/<id>.<tag>` on the router's public origin) shows a page whose button (a POST: link
previews in chat and mail GET a URL, and must not use it up) claims the link once and sets the tester's pin,
the pin cookie with a payload naming the link (pin.py): from then on that browser goes to the link's
cluster, while the cluster is healthy (routing.tester_cluster), until the link expires or is ended. Its
requests are labelled `bucket=tester` in the access log, counted apart in the metrics and recorded apart
(cluster.tester_records), so the analysis and the proactive shift never judge a cluster by its testers.

A link ends when it expires, when ops end it (`--revoke`) and when the pin key rotates: both its URL and its
cookie carry a tag made with the current key only. An ended link's pin is simply not a pin any more: the
browser gets an ordinary one, placed by the share.
"""
from __future__ import annotations

import hmac
import html
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from canary.dataplane.pin import BUCKETS, PinSigner
from canary.dataplane.router_paths import TESTER_PATH as PATH   # never forwarded: the router answers it

LINK: Final = b"L"                          # the purpose of a link URL's tag (a cookie's is pin.TESTER)
_NO_STORE: Final = (b"Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n"
                    b"X-Content-Type-Options: nosniff\r\n")
_PAGE_HEADERS: Final = _NO_STORE + (b"Content-Security-Policy: default-src 'none'; form-action 'self'; "
                                    b"frame-ancestors 'none'\r\nX-Frame-Options: DENY\r\n")
_GONE: Final = (b"This tester link was already used, has expired or was ended.\n"
                b"Ask the operators for a new one (canary tester-link CLUSTER).\n")
_PAGE: Final = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tester link</title></head>'
                '<body><h1>Try cluster {cluster}</h1><p>This browser will be sent to cluster <b>{cluster}</b> until '
                '{until} UTC, whatever share of users goes there. The link works once.</p>'
                '<form method="post"><button type="submit">Continue as a tester</button></form></body></html>\n')


class Answerable(Protocol):
    """The exchange of a link's request (exchange.py), as far as answering it goes."""

    done: bool
    body_done: bool
    body_bytes: int

    def answer_local(self, status: int, reason: str, headers: bytes, body: bytes | None = None,
                     content_type: bytes = b"text/plain") -> None: ...


Claim = Callable[[str, Callable[[bool], None]], None]   # (link id, then(first opening?)): see RouterProcess


def live_links(state: dict[str, Any], wall_now: float) -> dict[str, dict[str, Any]]:
    """The state's tester links that have not expired (malformed entries are ignored)."""
    links = state.get("testers")
    if not isinstance(links, dict):
        return {}
    return {k: v for k, v in links.items() if isinstance(k, str) and isinstance(v, dict)
            and isinstance(v.get("cluster"), str) and isinstance(v.get("expires_at"), (int, float))
            and v["expires_at"] > wall_now}


class TesterLinks:
    """The links of the shared state as the request path needs them, and the answer to a link's URL."""

    __slots__ = ("pin", "names", "links", "next_expiry", "claim")

    def __init__(self, pin: PinSigner, cluster_names: list[str]) -> None:
        self.pin = pin
        self.names = cluster_names                    # in routing order: a tester's bucket is BUCKETS + index
        self.links: dict[str, dict[str, Any]] = {}
        self.next_expiry = float("inf")
        self.claim: Claim | None = None               # set by the router process (its shared state claims)

    def apply(self, state: dict[str, Any], wall_now: float) -> None:
        """The shared state changed (or a link expired): rebuild the live links and the pin's tester table.
        Every live link is in the table, opened or not: its cookie exists only after a claim, and a router
        that has not yet seen the opening recorded must not take the tester's pin for a forgery."""
        self.links = {k: v for k, v in live_links(state, wall_now).items() if v["cluster"] in self.names}
        self.pin.testers = {k.encode(): BUCKETS + self.names.index(v["cluster"]) for k, v in self.links.items()}
        self.next_expiry = min((v["expires_at"] for v in self.links.values()), default=float("inf"))

    def expire(self, state: dict[str, Any], wall_now: float) -> None:
        """Called by the sweeper: drops links past their expiry (one comparison when none is due)."""
        if wall_now >= self.next_expiry:
            self.apply(state, wall_now)

    def url_path(self, link: str) -> str:
        """The path of a link's URL: its id and a tag that only this pin key makes."""
        tag = self.pin.tester_tag(LINK, link.encode()).decode()
        return PATH.decode() + f"{link}.{tag}"

    def open(self, ex: Answerable, path: bytes, method: bytes, wall_now: float) -> None:
        """A link's URL. GET or HEAD of a live, unopened link: the page with its button; POST: the first claim
        sets the tester's pin and goes to `/`. Anything else (forged, used, expired, ended, made under a
        previous key) gets 410 and changes nothing."""
        link, _, tag = path[len(PATH):].partition(b".")
        entry = self.links.get(link.decode("ascii", "replace"))
        good = hmac.compare_digest(tag, self.pin.tester_tag(LINK, link)) if link and tag else False
        if not good or entry is None or entry.get("opened_at") or self.claim is None:
            return gone(ex)
        cluster = str(entry["cluster"])
        expires = float(entry["expires_at"])
        if method in (b"GET", b"HEAD"):
            until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(expires))
            page = _PAGE.format(cluster=html.escape(cluster), until=until).encode()
            return ex.answer_local(200, "tester_link", _PAGE_HEADERS, page, b"text/html; charset=utf-8")
        if method != b"POST":
            return ex.answer_local(405, "tester_link", b"Allow: GET, HEAD, POST\r\n" + _NO_STORE)
        if ex.body_bytes or not ex.body_done:      # the button posts nothing: a body is not this page's
            return ex.answer_local(400, "tester_link", _NO_STORE, b"A tester link's POST has no body.\n")

        def then(first: bool) -> None:
            if ex.done:
                return
            if not first:
                return gone(ex)
            cookie = self.pin.tester_cookie(link, int(expires - wall_now))
            ex.answer_local(303, "tester_link", b"Location: /\r\n" + cookie + _NO_STORE,
                            b"You are a tester of cluster " + cluster.encode() + b".\n")
        self.claim(link.decode(), then)


def gone(ex: Answerable) -> None:
    ex.answer_local(410, "tester_link", _NO_STORE, _GONE)


def link_id(random_bytes: bytes) -> str:
    """A new link's id: hex of random bytes.

    Hex, not base64url: no dots (the URL and the cookie split on them), and never a leading "-", which
    `canary tester-link --revoke ID` would read as an option (one id in 16 did, before).
    """
    return random_bytes.hex()
