"""Private files created once, safely, by whichever of several processes starting together gets there first."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def create_once(path: Path, make: Callable[[], str]) -> str:
    """The content of `path`, creating it (0600, in a 0700 directory) with `make()` if it is absent.

    Written to a private temporary file and linked into place, so processes starting together
    agree on one content and none reads a half-written file. `make` runs only when the file is
    absent: a new secret or RSA key is not generated on every call.
    """
    if not path.exists():
        text = make()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())   # linked only once on disk: a crash never leaves an empty secret
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won the race; use its content
        finally:
            os.unlink(temporary)
    return path.read_text(encoding="utf-8")


def replace_private(path: Path, text: str) -> None:
    """Write `path` atomically with mode 0600 (readers see the old or the new content, never a mix)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
