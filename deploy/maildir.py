"""Maildir names: a message's id, and when the local mail server stored it (to the microsecond, from its name).

Python's mailbox.Maildir (deploy/mail_server.py) names each file after time.time() when it stores it,
"1796611456.M453446P…": seconds, then unpadded microseconds. Order and time come from there rather than
from the file's mtime, which some kernels keep only to the timer tick (two mails then tie, or the mtime is
earlier than the name), and rather than from the name as text ("M99871" sorts after "M101234").
"""
from __future__ import annotations

import re
from pathlib import Path

STORED_AT = re.compile(r"(\d{9,12})\.M(\d{1,6})P")


def message_id(file_name: str) -> str:
    """A message's name, the same in new/ and after a reader moved it to cur/ (which appends ':2,…')."""
    return file_name.split(":", 1)[0]


def stored_at(path: Path) -> float:
    """When the file at `path` was stored (epoch seconds): from its Maildir name, else (another writer's
    name) its mtime, which raises FileNotFoundError if a reader moved it meanwhile."""
    stamp = STORED_AT.match(path.name)
    if stamp:
        return int(stamp.group(1)) + int(stamp.group(2)) / 1e6
    return path.stat().st_mtime_ns / 1e9
