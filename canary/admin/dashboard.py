"""The ops dashboard on the admin listener: a login form for the admin token, a signed HttpOnly session cookie, CSRF tokens, static files.

The session cookie carries a random session id, the epoch it was issued in and its expiry, with an HMAC
of them under a key derived from the admin token, so rotating the token ends every session. Whether a
session is still live is the shared record's to say (ops_sessions.py): signing out ends that id on every
router, "sign out all" starts a new epoch. A state-changing request made with the cookie (rather than the
bearer token) must also carry the session's CSRF token in `X-CSRF-Token` and come from the dashboard's own
origin (Origin header, when the browser sends one); the cookie is SameSite=Strict besides. Pages are sent
with a Content-Security-Policy that allows only the dashboard's own scripts and styles, so no inline script
runs.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

COOKIE = "canary_ops"
SESSION_SECONDS = 8 * 3600
STATIC = Path(__file__).with_name("static")
FILES = {  # URL path -> (file, content type); nothing else under /static/ is served
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/static/uPlot.iife.min.js": ("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "/static/uPlot.min.css": ("vendor/uPlot.min.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


_COOKIE_SHAPE = re.compile(r"([0-9a-f]{32})\.([0-9a-f]{16})\.([0-9]{1,12})\.[0-9a-f]{64}")


@dataclass(frozen=True)
class Session:
    """A cookie whose HMAC and expiry are good; whether its id and epoch are still live is ops_sessions'."""

    sid: str
    epoch: str
    expires: int
    cookie: str


class Sessions:
    """Issue and check dashboard sessions and their CSRF tokens (all HMAC-SHA256 under one derived key)."""

    def __init__(self, admin_token: bytes, secure: bool = False) -> None:
        self.key = hmac.digest(admin_token, b"canary dashboard session v2", hashlib.sha256)
        self.secure = secure

    def _mac(self, what: bytes) -> str:
        return hmac.digest(self.key, what, hashlib.sha256).hex()

    def issue(self, now: float, epoch: str) -> str:
        payload = f"{secrets.token_hex(16)}.{epoch}.{int(now) + SESSION_SECONDS}"
        return f"{payload}.{self._mac(payload.encode())}"

    def parse(self, cookie: str | None, now: float) -> Session | None:
        """The session a well-formed, unexpired cookie with a right HMAC names; None for anything else."""
        m = _COOKIE_SHAPE.fullmatch(cookie or "")
        if m is None or int(m[3]) <= now:
            return None
        assert cookie is not None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(payload.encode())):
            return None
        return Session(m[1], m[2], int(m[3]), cookie)

    def csrf(self, cookie: str) -> str:
        return self._mac(b"csrf:" + cookie.encode())

    def csrf_ok(self, cookie: str, sent: str | None) -> bool:
        return sent is not None and sent != "" and hmac.compare_digest(sent, self.csrf(cookie))

    def set_cookie(self, value: str, max_age: int = SESSION_SECONDS) -> str:
        return (f"{COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict"
                + ("; Secure" if self.secure else ""))


def cookie_of(header: bytes) -> str | None:
    for part in header.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def same_origin(origin: bytes | None, host: bytes | None) -> bool:
    """No Origin (a non-browser client) passes; a browser's Origin must be this listener's own."""
    if not origin:
        return True
    if not host:
        return False
    own = host.decode("latin-1")
    return origin.decode("latin-1") in (f"http://{own}", f"https://{own}")


def form_token(body: bytes) -> str:
    values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=5).get("token", [""])
    return values[0].strip()


def login_page(error: str = "") -> bytes:
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · canary router</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body class="login"><main>
<h1>Canary router</h1>
<form method="post" action="/login">
{message}<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
<p class="hint">The token is <code>CANARY_ADMIN_TOKEN</code>, or the file <code>var/canary-admin-token</code>.</p>
</main></body></html>""".encode()


def dashboard_page(csrf: str) -> bytes:
    return (STATIC / "index.html").read_bytes().replace(b"{{csrf}}", html.escape(csrf).encode())


def static(path: str) -> tuple[bytes, str] | None:
    entry = FILES.get(path)
    if entry is None:
        return None
    name, ctype = entry
    return (STATIC / name).read_bytes(), ctype
