"""Secrets every node shares: from the environment, a configured file, or a private file made once (sharedlib/files.py)."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sharedlib.files import create_once


def shared_secret(env_key: str, option: str, local_name: str, make: Callable[[], str]) -> tuple[str, str]:
    """(text, where it came from) of a secret every node must share: the environment variable
    `env_key` (the secret itself), else the file that option LOGINSVC_<option> names, else locally
    var/<local_name>, made once by `make`. Production requires one of the first two: a secret made
    on each node would differ between them. One message naming the key when it cannot be read."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from loginsvc import conf

    if os.environ.get(env_key):
        return os.environ[env_key], env_key
    name, configured = conf.PREFIX + option, conf.get(option)
    path = Path(configured) if configured else Path(settings.VAR_DIR) / local_name
    if not configured:
        if settings.PRODUCTION:
            raise ImproperlyConfigured(f"{name}: required in production (or {env_key})")
        create_once(path, make)
    try:
        return path.read_text(encoding="utf-8"), f"{name} ({path})"
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ImproperlyConfigured(f"{name}: cannot read {path} ({reason})") from None
