"""The access log is written by a thread: a stdout nobody reads never stalls the router; what it drops it counts."""
from __future__ import annotations

import os
import threading

import pytest

from canary.access_log import MAX_PENDING, AccessLog


@pytest.mark.timeout(60)
def test_a_stalled_stdout_never_stalls_the_loop_and_drops_are_counted() -> None:
    read_end, write_end = os.pipe()          # a pipe nobody reads yet: its 64 KiB fill, then write() blocks
    out = os.fdopen(write_end, "wb", buffering=0)
    log = AccessLog(out, limit=100)
    line = "x" * 199 + "\n"
    batches = MAX_PENDING + 50
    for b in range(batches):                 # on the loop: each flush returns at once, writer blocked or not
        log.buf.extend(f"{b:06d} {line}" for _ in range(100))
        log.flush()
    assert 0 < log.dropped <= (batches - MAX_PENDING) * 100 and log.dropped % 100 == 0
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(os.fdopen(read_end, "rb").read()), daemon=True)
    reader.start()                           # the reader catches up: everything not dropped arrives, in order
    log.close()
    out.close()
    reader.join(30)
    lines = bytes(received).decode().splitlines()
    assert len(lines) + log.dropped == batches * 100
    numbers = [int(ln.split(" ", 1)[0]) for ln in lines]
    assert numbers == sorted(numbers) and numbers[0] == 0     # whole batches, first to last, none reordered


def test_close_writes_what_is_buffered(tmp_path) -> None:
    path = tmp_path / "log"
    with open(path, "wb") as f:
        log = AccessLog(f)
        log.buf.append("one line\n")
        log.close()
    assert path.read_text() == "one line\n" and log.dropped == 0
