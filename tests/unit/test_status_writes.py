"""Task status writes off the engine's step (statuswrites.py): one write per task in flight, a
state decided meanwhile re-syncs the task when the write ends, a failed write comes back with
backoff. The pool is a manual executor: the test decides when each write runs."""

from __future__ import annotations

from mesoskube.master.cache import Cache
from mesoskube.master.statuswrites import StatusWrites
from mesoskube.master.workqueue import WorkQueue
from mesoskube.master.writer import ApiError
from tests.unit.fakeapi import FakeApi, FakeClock


class ManualPool:
    """An Executor whose work runs when the test says (run_all)."""

    def __init__(self) -> None:
        self.work: list = []

    def submit(self, fn, *args):
        self.work.append((fn, args))

    def run_all(self) -> None:
        work, self.work = self.work, []
        for fn, args in work:
            fn(*args)


def setup():
    clock = FakeClock()
    api = FakeApi(clock)
    api.create("tasks", "ns", {"metadata": {"name": "t"}, "spec": {"agent": "a"}})
    cache = Cache()
    queue = WorkQueue(clock)
    pool = ManualPool()
    return api, cache, queue, pool, StatusWrites(api, cache, queue, pool)


def test_the_write_runs_on_the_pool_and_updates_the_cache_then_calls_after() -> None:
    api, cache, queue, pool, sw = setup()
    seen: list[dict] = []
    sw.write("ns/t", "TASK_RUNNING", {"state": "TASK_RUNNING"}, seen.append)
    assert api.get("tasks", "ns/t").get("status") is None  # not written by the step itself
    assert sw.busy("ns/t", "TASK_RUNNING")
    pool.run_all()
    assert api.get("tasks", "ns/t")["status"]["state"] == "TASK_RUNNING"
    assert cache.tasks["ns/t"]["status"]["state"] == "TASK_RUNNING"
    assert seen and seen[0]["status"]["state"] == "TASK_RUNNING"
    assert not sw.busy("ns/t", "TASK_RUNNING") and "ns/t" not in queue


def test_the_same_state_while_in_flight_is_one_write() -> None:
    _api, _cache, queue, pool, sw = setup()
    for _ in range(3):
        sw.write("ns/t", "TASK_RUNNING", {"state": "TASK_RUNNING"}, lambda b: None)
    assert len(pool.work) == 1
    pool.run_all()
    assert "ns/t" not in queue  # nothing else to say


def test_another_state_while_in_flight_waits_and_resyncs_the_task_after() -> None:
    api, _cache, queue, pool, sw = setup()
    sw.write("ns/t", "TASK_RUNNING", {"state": "TASK_RUNNING"}, lambda b: None)
    assert sw.busy("ns/t", "TASK_FINISHED")  # the sync must not write FINISHED now
    sw.write("ns/t", "TASK_FINISHED", {"state": "TASK_FINISHED"}, lambda b: None)
    assert len(pool.work) == 1  # never two writes of one task at once: no reordering
    pool.run_all()
    assert api.get("tasks", "ns/t")["status"]["state"] == "TASK_RUNNING"
    assert list(queue.drain()) == ["ns/t"]  # its sync decides FINISHED again, from the written state


def test_a_failed_write_comes_back_with_backoff_and_a_gone_task_does_not() -> None:
    api, cache, queue, pool, sw = setup()
    api.fail("status:tasks", ApiError(503, "Unavailable"))
    sw.write("ns/t", "TASK_RUNNING", {"state": "TASK_RUNNING"}, lambda b: None)
    pool.run_all()
    assert not sw.busy("ns/t", "TASK_RUNNING")
    assert "ns/t" not in list(queue.drain())  # not at once: after its backoff
    assert queue.next_ready_in() is not None
    api.fail("status:tasks", ApiError(404, "NotFound"))
    queue2 = WorkQueue(FakeClock())
    sw2 = StatusWrites(api, cache, queue2, pool)
    sw2.write("ns/t", "TASK_RUNNING", {"state": "TASK_RUNNING"}, lambda b: None)
    pool.run_all()
    assert queue2.next_ready_in() is None and not list(queue2.drain())


def test_without_a_pool_the_write_is_inline() -> None:
    api, cache, queue, _pool, _ = setup()
    sw = StatusWrites(api, cache, queue, None)
    sw.write("ns/t", "TASK_RUNNING", {"state": "TASK_RUNNING"}, lambda b: None)
    assert api.get("tasks", "ns/t")["status"]["state"] == "TASK_RUNNING"
