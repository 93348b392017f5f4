"""The work queue keeps client-go's contract, driven by a fake clock."""

from __future__ import annotations

from mesoskube.master.workqueue import WorkQueue
from tests.unit.fakeapi import FakeClock


def queue() -> tuple[WorkQueue, FakeClock]:
    clock = FakeClock()
    return WorkQueue(clock, base_delay=1.0, max_delay=8.0), clock


def test_keys_are_deduplicated() -> None:
    q, _ = queue()
    for k in ("a", "b", "a", "a"):
        q.add(k)
    assert list(q.drain()) == ["a", "b"]


def test_one_worker_per_key_an_add_while_processing_comes_back_after_done() -> None:
    q, _ = queue()
    q.add("a")
    assert q.get() == "a"
    q.add("a")
    assert q.get() is None, "a is being processed: not handed out twice"
    q.done("a")
    assert q.get() == "a"


def test_any_exception_requeues_with_per_key_exponential_backoff_and_success_forgets() -> None:
    q, clock = queue()
    q.add("a")
    q.add("b")
    assert q.get() == "a"
    q.done("a", KeyError("anything, not only API errors"))
    assert q.get() == "b", "a failing key does not starve the others"
    q.done("b")
    delays = []
    for _ in range(5):
        at = clock.now
        while (k := q.get()) is None:
            clock.advance(0.25)
        assert k == "a"
        delays.append(clock.now - at)
        q.done("a", KeyError("again"))
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped
    clock.advance(8)
    assert q.get() == "a"
    q.done("a")
    assert q.failures("a") == 0 and "a" not in q
    q.add("a")
    q.get()
    q.done("a", KeyError())
    assert q.next_ready_in() == 1.0, "forgotten: the backoff starts again from the base"


def test_a_failed_key_is_never_lost_and_a_fresh_add_overtakes_its_backoff() -> None:
    q, clock = queue()
    q.add("a")
    q.get()
    q.done("a", RuntimeError())
    assert "a" in q and q.get() is None and q.next_ready_in() == 1.0
    q.add("a")  # a new event: work now
    assert q.get() == "a"
    q.done("a")
    clock.advance(5)
    assert q.get() is None, "the stale backoff entry does not bring it back"


def test_a_retry_of_work_done_outside_the_queue_keeps_a_workers_hold_on_the_key() -> None:
    """An accept creating a task's pod is not the task queue's worker: its failure goes back with
    backoff (`retry`), not through `done`, which would end the hold of the worker that took the
    key, and an add meanwhile would hand it to a second worker at once."""
    q, clock = queue()
    q.add("k")
    assert q.get() == "k"  # a worker holds k
    q.retry("k")  # the accept's pod create failed
    q.add("k")  # an event meanwhile
    assert q.get() is None  # not to a second worker while the first holds it
    q.done("k")
    assert q.get() == "k"  # the add (it overtook the retry's backoff), once the hold ended
    q.done("k")
    q.retry("k")  # alone, it comes back after its backoff
    assert q.get() is None
    clock.advance(q.backoff(0))
    assert q.get() == "k" and q.failures("k") == 1
