"""The access log is written by a thread: a stdout nobody reads never stalls the router; what it drops it counts.
Refused requests get lines of their own, at most so many a second."""
from __future__ import annotations

import os
import threading

import pytest

from canary.dataplane.access_log import MAX_PENDING, REFUSALS_PER_SECOND, AccessLog


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


def test_refused_requests_are_logged_up_to_the_cap_then_counted_and_summed_up(tmp_path) -> None:
    """A flood of refusals writes at most REFUSALS_PER_SECOND lines a second; the rest are counted, and the
    end of the second (the sweeper's tick, or close) writes one line saying how many were left out."""
    path = tmp_path / "log"
    with open(path, "wb") as f:
        log = AccessLog(f)
        log.tick(1_000_000.0)
        for _ in range(1000):
            log.refused(400, "bad_head", b"198.51.100.7")
        assert log.not_logged == 1000 - REFUSALS_PER_SECOND
        log.tick(1_000_000.9)                  # the same second: nothing more
        log.refused(431, "head_too_large", b"198.51.100.7")
        log.tick(1_000_001.0)                  # the window ends: the summary; the next second logs again
        log.refused(413, "body_too_large", b"2001:db8::1")
        log.refused(400, "bad_chunk", b"2001:db8::1")
        log.close()
    lines = path.read_text().splitlines()
    assert lines[0] == '1970-01-12T13:46:40Z 198.51.100.7 "-" 400 0 - - attempts=0 bucket=- refused:bad_head'
    assert lines[1:REFUSALS_PER_SECOND] == lines[:1] * (REFUSALS_PER_SECOND - 1)
    assert lines[REFUSALS_PER_SECOND:] == [
        "1970-01-12T13:46:40Z refused requests: 981 more not logged",
        '1970-01-12T13:46:41Z 2001:db8::1 "-" 413 0 - - attempts=0 bucket=- refused:body_too_large',
        '1970-01-12T13:46:41Z 2001:db8::1 "-" 400 0 - - attempts=0 bucket=- refused:bad_chunk']
    assert log.not_logged == 981


def test_close_sums_up_a_window_that_had_not_ended(tmp_path) -> None:
    path = tmp_path / "log"
    with open(path, "wb") as f:
        log = AccessLog(f)
        for _ in range(REFUSALS_PER_SECOND + 3):
            log.refused(400, "bad_head", b"192.0.2.1")
        log.close()
    assert path.read_text().splitlines()[-1].endswith(" refused requests: 3 more not logged")
