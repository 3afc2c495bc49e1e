"""The retry budget bounds concurrent retries and hands freed slots to waiters in order; the concurrency limit
admits, queues or refuses."""
from __future__ import annotations

from canary.dataplane.limits import Admission, ConcurrencyLimit
from canary.dataplane.retry_budget import RetryBudget


def test_retry_budget_and_limits():
    b = RetryBudget(20, 3)
    b.active = 10
    assert [b.try_acquire() for _ in range(4)] == [True, True, True, False]
    b.active = 100
    assert b.try_acquire()

    class Item:
        queued = True
        queue_deadline = 5.0
    lim = ConcurrencyLimit(1, 1)
    a, q, r = Item(), Item(), Item()
    assert (lim.admit(a), lim.admit(q), lim.admit(r)) == (1, 0, -1)
    assert lim.release() is q and lim.active == 1
    assert lim.release() is None and lim.active == 0


def test_admission_names_what_the_limit_decided():
    lim = ConcurrencyLimit(1, 0)
    item = type("Item", (), {"queued": True, "queue_deadline": 0.0})()
    assert lim.admit(item) is Admission.ADMITTED and lim.admit(item) is Admission.REJECTED and lim.rejected == 1


class Waiter:
    def __init__(self) -> None:
        self.done = False
        self.waiting_retry = False
        self.resumed = 0

    def resume_retry(self) -> None:
        self.waiting_retry = False
        self.resumed += 1


def test_a_freed_retry_slot_goes_to_the_first_waiter_still_waiting():
    b = RetryBudget(0, 1)                   # one retry at a time
    assert b.try_acquire() and not b.try_acquire()
    gone, first, second = Waiter(), Waiter(), Waiter()
    for w in (gone, first, second):
        b.wait(w)
    assert all(w.waiting_retry for w in (gone, first, second))
    gone.done = True                        # its client left: skipped, not resumed
    b.release()
    assert (gone.resumed, first.resumed, second.resumed) == (0, 1, 0) and b.retrying == 1
    b.release()
    assert second.resumed == 1 and not b.waiters
    b.release()
    assert b.retrying == 0                  # nobody left waiting: the slot stays free
