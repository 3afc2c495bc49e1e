"""Server-side product sessions in memory (optionally mirrored to a 0600 file so a restart keeps them)."""
from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("demo_products")

IDLE_SECONDS = 8 * 3600          # a product session nobody used for this long is forgotten
PENDING_SECONDS = 600            # an authorization request must come back within this
MAX_PENDING = 5                  # per browser: a few tabs signing in at once, not an unbounded list
MAX_SESSIONS = 10_000            # anonymous sessions are cheap to create: bound the memory they take
REPLAY_SECONDS = 7 * 86400       # how long a logout token's jti is remembered
MAX_JTIS = 100_000


@dataclass
class Pending:
    """One authorization request in flight: what the callback must check and send."""
    nonce: str
    code_verifier: str
    started: float


@dataclass
class Session:
    key: str
    client_id: str
    csrf: str
    seen: float
    pending: dict[str, Pending] = field(default_factory=dict)   # state -> request
    user: dict[str, Any] | None = None                          # email, name, sub, sid, id_token, tokens


def new_key() -> str:
    return secrets.token_urlsafe(32)


class SessionStore:
    """Sessions by (client_id, cookie value), and the jti of every logout token already honoured.

    One process holds them (gunicorn runs one worker), so one lock is all the coordination needed."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], Session] = {}
        self._jtis: dict[str, float] = {}       # "<client_id> <jti>" -> when it was first seen
        if path is not None:
            self._load(path)

    # -- sessions ------------------------------------------------------------------------------------------
    def get(self, client_id: str, key: str | None) -> Session | None:
        if not key:
            return None
        now = time.time()
        with self._lock:
            session = self._sessions.get((client_id, key))
            if session is None:
                return None
            if now - session.seen > IDLE_SECONDS:
                self._drop(session)
                return None
            session.seen = now
            return session

    def create(self, client_id: str) -> Session:
        session = Session(new_key(), client_id, secrets.token_urlsafe(24), time.time())
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions.values(), key=lambda s: s.seen)
                self._drop(oldest)
            self._sessions[(client_id, session.key)] = session
        return session

    def add_pending(self, session: Session, state: str, nonce: str, code_verifier: str) -> None:
        now = time.time()
        with self._lock:
            live = {k: p for k, p in session.pending.items() if now - p.started < PENDING_SECONDS}
            while len(live) >= MAX_PENDING:
                live.pop(min(live, key=lambda k: live[k].started))
            live[state] = Pending(nonce, code_verifier, now)
            session.pending = live

    def take_pending(self, session: Session | None, state: str) -> Pending | None:
        """The request `state` names, removed (a state is good for one callback), if still fresh."""
        if session is None or not state:
            return None
        with self._lock:
            pending = session.pending.pop(state, None)
        if pending is None or time.time() - pending.started >= PENDING_SECONDS:
            return None
        return pending

    def sign_in(self, session: Session, user: dict[str, Any]) -> Session:
        """A new cookie value for the signed-in session: the one the browser had before signing in
        could have been planted (session fixation), so it is not the one that gets the account."""
        signed_in = Session(new_key(), session.client_id, secrets.token_urlsafe(24), time.time(), user=user)
        with self._lock:
            self._sessions.pop((session.client_id, session.key), None)
            self._sessions[(signed_in.client_id, signed_in.key)] = signed_in
            self._save()
        return signed_in

    def end(self, session: Session) -> None:
        with self._lock:
            self._drop(session)

    def end_matching(self, client_id: str, sid: str | None, sub: str | None) -> int:
        """End this product's sessions of the central session `sid` (or, without a sid, of user `sub`)."""
        def matches(user: dict[str, Any]) -> bool:
            if sid:
                return user.get("sid") == sid and (not sub or user.get("sub") == sub)
            return bool(sub) and user.get("sub") == sub

        with self._lock:
            gone = [s for s in self._sessions.values() if s.client_id == client_id and s.user and matches(s.user)]
            for session in gone:
                self._sessions.pop((session.client_id, session.key), None)
            if gone:
                self._save()
        return len(gone)

    def signed_in_count(self, client_id: str) -> int:
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.client_id == client_id and s.user)

    # -- replay protection for logout tokens ---------------------------------------------------------------
    def first_use(self, client_id: str, jti: str) -> bool:
        """True the first time this product sees `jti`, False for a replay."""
        now = time.time()
        key = f"{client_id} {jti}"
        with self._lock:
            if key in self._jtis:
                return False
            if len(self._jtis) >= MAX_JTIS:
                self._jtis = {k: t for k, t in self._jtis.items() if now - t < REPLAY_SECONDS}
                while len(self._jtis) >= MAX_JTIS:
                    self._jtis.pop(next(iter(self._jtis)))
            self._jtis[key] = now
            self._save()
        return True

    # -- internals (called with the lock held) -------------------------------------------------------------
    def _drop(self, session: Session) -> None:
        if self._sessions.pop((session.client_id, session.key), None) is not None and session.user:
            self._save()

    def _save(self) -> None:
        """Signed-in sessions and seen jtis only: a sign-in in flight may be lost, an account may not."""
        if self.path is None:
            return
        data = {"sessions": [asdict(s) | {"pending": {}} for s in self._sessions.values() if s.user],
                "jtis": self._jtis}
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            sessions = [Session(**{**s, "pending": {}}) for s in data.get("sessions", [])]
            jtis = {str(k): float(v) for k, v in data.get("jtis", {}).items()}
        except FileNotFoundError:
            return
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable sessions file %s (%s)", path, exc)
            return
        now = time.time()
        self._sessions = {(s.client_id, s.key): s for s in sessions if now - s.seen <= IDLE_SECONDS}
        self._jtis = {k: t for k, t in jtis.items() if now - t < REPLAY_SECONDS}
