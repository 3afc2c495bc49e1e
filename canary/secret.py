"""Shared secrets (admin token, pin key): from env, else from a 0600 file generated on first use."""
from __future__ import annotations

import os
import secrets

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
    """Used by `serve`: several router instances share the file (or env), so create it only when absent."""
    value = read_secret(env, file_env, default)
    if value:
        return value
    path = secret_path(file_env, default)
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)  # var/ holds secrets: owner only
    value = secrets.token_urlsafe(32)
    # Write a private temp file, then link it into place: the secret file appears complete or not at all,
    # so a racing instance never reads a half-written (empty) file and ends up with a different secret.
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)             # fails if another instance already created the file
    except FileExistsError:            # another instance won the race: use its secret
        return read_secret(env, file_env, default) or value
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    return value


def var_path(name: str) -> str:
    """A file in the local stack's state folder: LOGINSVC_VAR_DIR (as `make up` and manage.py use it) or var/."""
    return os.path.join(os.environ.get("LOGINSVC_VAR_DIR") or "var", name)


def admin_token(create: bool) -> str | None:
    args = ("CANARY_ADMIN_TOKEN", "CANARY_ADMIN_TOKEN_FILE", var_path("canary-admin-token"))
    return load_or_create_secret(*args) if create else read_secret(*args)


def pin_secret() -> str:
    return load_or_create_secret("CANARY_PIN_SECRET", "CANARY_PIN_SECRET_FILE", var_path("canary-pin-secret"))


def pin_secret_fallbacks() -> tuple[str, ...]:
    """Previous pin keys, still accepted for verification while browsers' pins are re-signed (key rotation):
    env CANARY_PIN_SECRET_FALLBACKS (comma- or space-separated), else the file CANARY_PIN_SECRET_FALLBACKS_FILE
    (default var/canary-pin-secret-fallbacks, one key per line). Never created: no file means no fallbacks."""
    value = read_secret("CANARY_PIN_SECRET_FALLBACKS", "CANARY_PIN_SECRET_FALLBACKS_FILE",
                        var_path("canary-pin-secret-fallbacks"))
    return tuple((value or "").replace(",", " ").split())
