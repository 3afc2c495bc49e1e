"""Shared secrets (admin token, pin key): from env, else from a 0600 file generated on first use."""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from sharedlib.files import create_once   # the code base's one "create a private file once, safely"

log = logging.getLogger("canary.secret")
MIN_LENGTH = 16  # generated secrets are 43 characters; a shorter configured one is refused


def secret_path(file_env: str, default: str) -> str:
    return os.environ.get(file_env) or default


def read_secret(env: str, file_env: str, default: str) -> str | None:
    """Return the secret from env or file, or None when neither exists (the ops verbs never create one)."""
    value = os.environ.get(env)
    if value:
        return value.strip()
    path = secret_path(file_env, default)
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except FileNotFoundError:
        return None
    return value or None


def load_or_create_secret(env: str, file_env: str, default: str) -> str:
    """Used by `serve`: several router instances share the file (or env), so create it only when absent
    (sharedlib/files.py's create_once: a private file linked into place, so racing instances agree)."""
    value = read_secret(env, file_env, default)
    if value:
        return value
    path = Path(secret_path(file_env, default))
    return create_once(path, lambda: secrets.token_urlsafe(32) + "\n").strip()   # an empty file: `serve` refuses it


def var_path(name: str) -> str:
    """A file in the local stack's state folder: LOGINSVC_VAR_DIR (as `make up` and manage.py use it) or var/."""
    return os.path.join(os.environ.get("LOGINSVC_VAR_DIR") or "var", name)


def _admin_token_places() -> tuple[str, str, str]:
    """Where the admin token comes from: its variable, its file variable, the local file made once."""
    return "CANARY_ADMIN_TOKEN", "CANARY_ADMIN_TOKEN_FILE", var_path("canary-admin-token")


def admin_token(create: bool) -> str | None:
    places = _admin_token_places()
    return load_or_create_secret(*places) if create else read_secret(*places)


def pin_secret() -> str:
    return load_or_create_secret("CANARY_PIN_SECRET", "CANARY_PIN_SECRET_FILE", var_path("canary-pin-secret"))


def pin_secret_fallbacks() -> tuple[str, ...]:
    """Previous pin keys, still accepted for verification while browsers' pins are re-signed (key rotation):
    env CANARY_PIN_SECRET_FALLBACKS (comma- or space-separated), else the file CANARY_PIN_SECRET_FALLBACKS_FILE
    (default var/canary-pin-secret-fallbacks, one key per line). Never created: no file means no fallbacks."""
    value = read_secret("CANARY_PIN_SECRET_FALLBACKS", "CANARY_PIN_SECRET_FALLBACKS_FILE",
                        var_path("canary-pin-secret-fallbacks"))
    return tuple((value or "").replace(",", " ").split())


class RotatingSecret:
    """A secret that a running router re-reads when its file changes, so writing a new admin token into the
    file (atomically: a temporary file renamed over it, as Kubernetes and systemd credentials do) rotates it
    without a restart. From the environment it is fixed for the process's life, as the environment is.

    A changed file is re-read at the next use (one stat per call: the admin listener is not on the hot path).
    A new content that is missing or shorter than MIN_LENGTH is refused, as `serve` refuses it at start: the
    previous secret stays and an error is logged, so a half-done rotation does not lock the operators out."""

    def __init__(self, env: str, file_env: str, default: str, current: str) -> None:
        self.value = current
        self.path: str | None = None if os.environ.get(env) else secret_path(file_env, default)
        self._names = (env, file_env, default)
        self._seen = self._signature()

    def _signature(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def current(self) -> str:
        """The secret now: the file's new content once it changed and is long enough, else the one in use."""
        seen = self._signature()
        if self.path is None or seen == self._seen:
            return self.value
        self._seen = seen
        try:
            value = read_secret(*self._names)
        except OSError:          # unreadable (permissions): as missing
            value = None
        if value is not None and len(value) >= MIN_LENGTH:
            self.value = value
        else:
            log.error("%s: missing, unreadable or shorter than %d characters; keeping the secret in use",
                      self.path, MIN_LENGTH)
        return self.value


def admin_token_source(current: str) -> RotatingSecret:
    """The admin token the router checks, from the same environment variable or file as `admin_token`."""
    return RotatingSecret(*_admin_token_places(), current)
