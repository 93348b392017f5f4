"""The Spark application against a fake driver and a fake clock: coarse runs emulated tasks on its
executors' slots, fine launches a Task per emulated task; the metrics add up."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mesoskube.api.models import TaskState
from mesoskube.frameworks.sdk import DriverStatus, Offer, TaskStatus
from mesoskube.frameworks.spark.app import CoreTimeline, SparkApplication, percentile
from mesoskube.frameworks.spark.conf import SparkConf
from mesoskube.frameworks.spark.workload import EmulatedWorkload


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Timer:
    due: float
    fn: object
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeDriver:
    clock: Clock
    accepted: dict[str, list] = field(default_factory=dict)
    declined: dict[str, float | None] = field(default_factory=dict)
    filters: dict[str, dict | None] = field(default_factory=dict)
    revives: int = 0
    killed: list[str] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    status: DriverStatus = DriverStatus.RUNNING
    stats: object = None

    def accept(self, offer_id, tasks, filters=None):
        self.accepted[offer_id] = list(tasks)
        self.filters[offer_id] = filters

    def decline(self, offer_id, refuse_seconds=None):
        self.declined[offer_id] = refuse_seconds

    def revive(self):
        self.revives += 1

    def kill_task(self, task_id):
        self.killed.append(task_id)

    def call_later(self, delay, fn):
        t = Timer(self.clock.t + delay, fn)
        self.timers.append(t)
        return t

    def stop(self, failover=False):
        self.status = DriverStatus.STOPPED

    def run_timers_until(self, t: float) -> None:
        while True:
            due = sorted((x for x in self.timers if not x.cancelled and x.due <= t), key=lambda x: x.due)
            if not due:
                break
            x = due[0]
            self.timers.remove(x)
            self.clock.t = x.due
            x.fn()
        self.clock.t = t


def status(task_id: str, state: TaskState) -> TaskStatus:
    return TaskStatus(task_id=task_id, state=state)


def make(conf: dict, stages: list[dict]) -> tuple[SparkApplication, FakeDriver, Clock]:
    clock = Clock()
    app = SparkApplication(
        SparkConf.parse(conf), EmulatedWorkload.model_validate({"stages": stages}), "app", clock=clock
    )
    driver = FakeDriver(clock)
    app.driver = driver  # type: ignore[assignment]
    app.submitted_at = clock()
    app.run_state.start()
    app.registered(driver, "fw-1")  # type: ignore[arg-type]
    return app, driver, clock


def test_coarse_app_runs_tasks_on_executor_slots_stage_by_stage():
    app, d, clock = make(
        {"spark.cores.max": "4", "spark.executor.cores": "2"},
        [{"tasks": 6, "seconds": 2.0}, {"tasks": 2, "seconds": 1.0}],
    )
    app.resource_offers(d, [Offer.build("o1", "a", cpus=8, mem=32768)])  # type: ignore[arg-type]
    executors = [t.name for t in d.accepted["o1"]]
    assert len(executors) == 2 and d.filters["o1"] is None  # Spark launches with default filters
    assert app.progress().cores_held == 4 and app.progress().cores_busy == 0
    clock.t = 1.0
    for name in executors:
        app.status_update(d, status(name, TaskState.STAGING))  # type: ignore[arg-type]
        app.status_update(d, status(name, TaskState.RUNNING))  # type: ignore[arg-type]
    assert app.progress().cores_busy == 4  # 4 slots busy, 2 tasks still waiting
    d.run_timers_until(3.0)  # first wave done, second wave starts at 3.0
    assert app.run_state.done_tasks == 4 and app.progress().cores_busy == 2
    d.run_timers_until(5.0)  # stage 0 done at 5.0; stage 1 runs 5.0 -> 6.0
    assert app.run_state.stage == 1
    d.run_timers_until(10.0)
    assert app.done.is_set() and d.status is DriverStatus.STOPPED
    s = app.summary()
    assert s.ok and s.makespan_s == 6.0 and s.tasks_done == 8
    # Latencies: 4 tasks waited 1 s (executors), 2 waited 3 s (slots), 2 waited 0 s (stage 1).
    assert sorted(app.run_state.latencies) == [0, 0, 1, 1, 1, 1, 3, 3]
    # Held: 4 cores from 0 to 6 = 24 core-s; busy: 4 (1..3) + 2 (3..5) + 2 (5..6) = 14 core-s.
    assert s.cores_held_core_s == 24 and s.cores_busy_core_s == 14 and s.idle_core_s == 10
    assert s.utilisation == round(14 / 24, 4) and s.mean_idle_cores_held == round(10 / 6, 3)
    assert s.peak_cores_held == 4


def test_coarse_executor_loss_retries_its_tasks_and_revives():
    app, d, clock = make({"spark.executor.cores": "2"}, [{"tasks": 2, "seconds": 5.0}])
    app.resource_offers(d, [Offer.build("o1", "a", cpus=2, mem=32768)])  # type: ignore[arg-type]
    (ex,) = [t.name for t in d.accepted["o1"]]
    app.status_update(d, status(ex, TaskState.RUNNING))  # type: ignore[arg-type]
    assert app.run_state.running == 2
    clock.t = 1.0
    app.status_update(d, status(ex, TaskState.LOST))  # type: ignore[arg-type]
    assert d.revives == 1 and len(app.run_state.pending) == 2 and app.progress().cores_held == 0
    assert all(t.attempt == 1 for t in app.run_state.pending)
    d.run_timers_until(10.0)  # the lost executor's timers must not complete anything
    assert app.run_state.done_tasks == 0


def test_fine_app_launches_a_task_per_spark_task_and_revives_for_the_next_stage():
    app, d, clock = make(
        {"spark.mesos.coarse": "false"}, [{"tasks": 3, "seconds": 2.0}, {"tasks": 1, "seconds": 1.0}]
    )
    app.resource_offers(d, [Offer.build("o1", "a", cpus=4, mem=8192)])  # type: ignore[arg-type]
    ex, *tasks = d.accepted["o1"]
    assert d.filters["o1"] == {"refuseSeconds": 1.0} and len(tasks) == 3
    assert app.progress().cores_held == 4
    clock.t = 0.5
    for t in [ex, *tasks]:
        app.status_update(d, status(t.name, TaskState.RUNNING))  # type: ignore[arg-type]
    assert app.progress().cores_busy == 3 and app.run_state.latencies == [0.5, 0.5, 0.5]
    clock.t = 2.5
    for t in tasks:
        app.status_update(d, status(t.name, TaskState.FINISHED))  # type: ignore[arg-type]
    assert d.revives == 1 and app.run_state.stage == 1 and app.progress().cores_held == 1
    # The next offer on the same agent reuses the executor.
    app.resource_offers(d, [Offer.build("o2", "a", cpus=3, mem=6784)])  # type: ignore[arg-type]
    (t2,) = d.accepted["o2"]
    assert t2.executor == ex.name
    clock.t = 3.0
    app.status_update(d, status(t2.name, TaskState.RUNNING))  # type: ignore[arg-type]
    clock.t = 4.0
    app.status_update(d, status(t2.name, TaskState.FINISHED))  # type: ignore[arg-type]
    assert app.done.is_set() and d.status is DriverStatus.STOPPED
    s = app.summary()
    assert s.ok and s.makespan_s == 4.0 and s.executors_launched == 1
    # An offer while nothing is ready is declined with the default filter.
    app2, d2, _ = make({"spark.mesos.coarse": "false"}, [{"tasks": 1, "seconds": 1}])
    app2.run_state.take()
    app2.resource_offers(d2, [Offer.build("o9", "b", cpus=4, mem=8192)])  # type: ignore[arg-type]
    assert d2.declined == {"o9": None}


def test_fine_failed_task_is_retried():
    app, d, _ = make({"spark.mesos.coarse": "false"}, [{"tasks": 1, "seconds": 2.0}])
    app.resource_offers(d, [Offer.build("o1", "a", cpus=2, mem=8192)])  # type: ignore[arg-type]
    _, task = d.accepted["o1"]
    app.status_update(d, status(task.name, TaskState.FAILED))  # type: ignore[arg-type]
    assert [t.id for t in app.run_state.pending] == ["s0t0a1"] and d.revives == 1
    app.resource_offers(d, [Offer.build("o2", "a", cpus=1, mem=0)])  # type: ignore[arg-type]
    (retry,) = d.accepted["o2"]
    assert retry.name == "app-s0t0a1"


def test_timeline_integrates_and_samples():
    tl = CoreTimeline()
    tl.record(0, 4, 0)
    tl.record(1, 4, 2)
    tl.record(3, 2, 2)
    assert tl.integrate(0, 4) == (4 + 8 + 2, 4 + 2, 4 + 4 + 0)
    assert tl.sample(0, 2, 1.0) == [(0, 4, 0), (1, 4, 2), (2, 4, 2)]
    assert tl.peak_held() == 4


def test_percentile_interpolates():
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1.0] * 99 + [100.0], 99) == pytest.approx(1.99)


def test_fine_task_whose_first_update_is_finished_counts_busy_for_its_run_not_idle():
    """The master may see a task's pod only once it completed (its queue behind, a short task): the
    first update is TASK_FINISHED, no TASK_RUNNING. The task did run its 2 s on the node; before
    the fix its cores counted as held idle from accept to end and its run as no work at all."""
    app, d, clock = make({"spark.mesos.coarse": "false"}, [{"tasks": 1, "seconds": 2.0}])
    app.resource_offers(d, [Offer.build("o1", "a", cpus=2, mem=8192)])  # type: ignore[arg-type]
    ex, task = d.accepted["o1"]
    clock.t = 1.0
    app.status_update(d, status(ex.name, TaskState.RUNNING))  # type: ignore[arg-type]
    clock.t = 5.0
    app.status_update(d, status(task.name, TaskState.FINISHED))  # type: ignore[arg-type]
    s = app.summary()
    assert s.ok and s.finished_without_running == 1
    # Held: the task's core 0..5 and the executor's 0..5 = 10 core-s; busy: the task's 2 s run.
    assert s.cores_held_core_s == 10 and s.cores_busy_core_s == 2
    # Idle: the executor's core 5 (1 of it launching), the task's 3 s before its run (launching).
    assert s.idle_by_cause_core_s == {"launching": 4.0, "fine_executors": 4.0, "free_slots": 0.0}


def test_idle_cores_by_cause_in_coarse_mode_are_launching_executors_and_free_slots():
    app, d, clock = make(
        {"spark.cores.max": "2", "spark.executor.cores": "2"}, [{"tasks": 1, "seconds": 2.0}]
    )
    app.resource_offers(d, [Offer.build("o1", "a", cpus=8, mem=32768)])  # type: ignore[arg-type]
    (ex,) = d.accepted["o1"]
    clock.t = 1.0
    app.status_update(d, status(ex.name, TaskState.RUNNING))  # type: ignore[arg-type]
    d.run_timers_until(3.0)
    s = app.summary()
    # Held 2 cores 0..3 = 6; busy 1 core 1..3 = 2; idle 4 = 2 launching (0..1) + 2 free slot (1..3).
    assert s.idle_core_s == 4 and s.idle_by_cause_core_s == {
        "launching": 2.0,
        "fine_executors": 0.0,
        "free_slots": 2.0,
    }
    assert s.finished_without_running == 0


def test_timeline_add_changes_a_past_interval_only():
    tl = CoreTimeline()
    tl.record(0, 2, 0)
    tl.record(4, 0, 0)
    tl.add(1, 3, busy=1)
    assert tl.points == [(0, 2, 0), (1, 2, 1), (3, 2, 0), (4, 0, 0)]
    assert tl.integrate(0, 4) == (8, 2, 6)
