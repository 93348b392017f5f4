"""The offer-create queue serves frameworks in turn (fairqueue.py); `take` driven by the test,
without worker threads, except in the last test."""

from __future__ import annotations

import threading

from mesoskube.master.fairqueue import FairQueue


def make() -> FairQueue:
    return FairQueue(0)  # no worker threads: the test takes the work itself


def test_a_newcomers_first_piece_of_work_waits_for_one_turn_not_the_whole_backlog() -> None:
    q = make()
    for i in range(256):
        q.submit_for("ns/big", "big", i)
    q.submit_for("ns/new", "new", 0)
    taken = [q.take() for _ in range(3)]
    assert [fn for fn, _ in taken] == ["big", "new", "big"]  # type: ignore[misc]
    assert q.pending() == 254


def test_work_of_one_framework_stays_in_order_and_shutdown_drops_what_is_left() -> None:
    q = make()
    for i in range(3):
        q.submit_for("a", "a", i)
    assert [q.take()[1] for _ in range(2)] == [(0,), (1,)]  # type: ignore[index]
    q.shutdown(wait=False, cancel_futures=True)
    assert q.take() is None


def test_the_workers_run_every_piece_of_work() -> None:
    done: list[int] = []
    finished = threading.Event()
    q = FairQueue(2, "test-fair")
    for i in range(20):
        q.submit_for(i % 3, lambda i=i: (done.append(i), len(done) == 20 and finished.set()))
    assert finished.wait(10)
    q.shutdown()
    assert sorted(done) == list(range(20))
