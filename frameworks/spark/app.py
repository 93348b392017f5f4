"""A Spark application on mesoskube: configuration + backend (coarse or fine) + EMULATED workload,
driven through the scheduler SDK, with the measurements that compare the two modes.

Measurements (all from this process's clock):
- makespan: submission (driver start) -> last emulated task done;
- launch latency of each emulated Spark task, ready -> started. Coarse: waiting for a free slot on
  an executor already held, plus the in-process dispatch; fine: waiting for an offer, the accept,
  the Task and its Pod, until the master reports TASK_RUNNING;
- cores held over time: cpus of this app's launched Tasks from accept until their terminal update
  (coarse: executors; fine: per-agent executors + task Tasks), and cores busy (emulated Spark tasks
  running x spark.task.cpus); idle = held - busy; utilisation = busy core-seconds / held
  core-seconds, over the makespan;
- where the idle cores were (idle_by_cause, core-seconds): `launching` (accepted Tasks not RUNNING
  yet: the offer -> Task -> Pod -> status path; coarse: starting executors), `fine_executors` (fine
  mode's per-agent executors, held for the app's life and never running a task), and `free_slots`
  (the rest: coarse executors' slots without a task). Tasks whose first update was terminal
  (the master saw their pod only after it had completed) are counted in
  `finished_without_running`: they did run on their node, but this process never saw them busy.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mesoskube.api.models import Capability, TaskState
from mesoskube.frameworks.sdk import DriverStatus, Offer, Scheduler, SchedulerDriver, TaskStatus
from mesoskube.frameworks.spark.coarse import CoarseScheduler, Decision, Launch
from mesoskube.frameworks.spark.conf import SparkConf
from mesoskube.frameworks.spark.fine import FineScheduler
from mesoskube.frameworks.spark.workload import EmulatedWorkload, WorkloadFailed, WorkloadRun
from mesoskube.kube import Kube

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ metrics


@dataclass
class CoreTimeline:
    """Step functions of cores held and cores busy, recorded at every change."""

    points: list[tuple[float, float, float]] = field(default_factory=list)  # (t, held, busy)

    def record(self, t: float, held: float, busy: float) -> None:
        if self.points and self.points[-1][1:] == (held, busy):
            return
        if self.points and self.points[-1][0] == t:
            self.points[-1] = (t, held, busy)
        else:
            self.points.append((t, held, busy))

    def add(self, t0: float, t1: float, held: float = 0.0, busy: float = 0.0) -> None:
        """Add to the values over [t0, t1) after the fact (a run learnt of only at its end)."""
        if t1 <= t0:
            return
        for t in (t0, t1):
            if not any(pt == t for pt, _, _ in self.points):
                h, b = self.value_at(t)
                self.points.append((t, h, b))
        self.points.sort(key=lambda p: p[0])
        self.points = [(pt, h + held, b + busy) if t0 <= pt < t1 else (pt, h, b) for pt, h, b in self.points]

    def value_at(self, t: float) -> tuple[float, float]:
        held = busy = 0.0
        for pt, h, b in self.points:
            if pt > t:
                break
            held, busy = h, b
        return held, busy

    def integrate(self, t0: float, t1: float) -> tuple[float, float, float]:
        """(held, busy, idle) core-seconds over [t0, t1]; idle counts held cores not busy."""
        held_s = busy_s = idle_s = 0.0
        if t1 <= t0:
            return 0.0, 0.0, 0.0
        pts = self.points
        for i, (pt, h, b) in enumerate(pts):
            start = max(pt, t0)
            end = min(pts[i + 1][0] if i + 1 < len(pts) else t1, t1)
            if end <= start:
                continue
            d = end - start
            held_s += h * d
            busy_s += b * d
            idle_s += max(0.0, h - b) * d
        return held_s, busy_s, idle_s

    def sample(self, t0: float, t1: float, step: float = 0.5) -> list[tuple[float, float, float]]:
        """(seconds since t0, held, busy) every `step` seconds."""
        out = []
        n = max(1, math.ceil((t1 - t0) / step))
        for i in range(n + 1):
            t = min(t0 + i * step, t1)
            h, b = self.value_at(t)
            out.append((round(t - t0, 3), h, b))
        return out

    def peak_held(self) -> float:
        return max((h for _, h, _ in self.points), default=0.0)


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# ------------------------------------------------------------------------------------ app


def framework_name_for(app_name: str, unique: bool = True) -> str:
    """A DNS label for the Framework: the app name lower-cased, with a short random suffix."""
    base = re.sub(r"[^a-z0-9-]+", "-", app_name.lower()).strip("-")[:30].strip("-") or "spark"
    return f"{base}-{uuid.uuid4().hex[:5]}" if unique else base


@dataclass
class _Slots:
    """An executor registered with the (emulated) driver: task slots and what runs on them."""

    executor: str
    slots: int
    running: set[str] = field(default_factory=set)

    @property
    def free(self) -> int:
        return self.slots - len(self.running)


@dataclass
class Progress:
    mode: str
    elapsed: float
    tasks_done: int
    tasks_total: int
    stage: int
    stages: int
    executors: int
    cores_held: float
    cores_busy: float
    finished: bool


class SparkApplication(Scheduler):
    """One Spark application (emulated workload) as a mesoskube framework."""

    def __init__(
        self,
        conf: SparkConf,
        workload: EmulatedWorkload,
        framework_name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conf = conf
        self.workload = workload
        self.framework_name = framework_name or framework_name_for(conf.app_name)
        if len(self.framework_name) > 40:
            raise ValueError(f"framework name {self.framework_name!r} is longer than 40 characters")
        self.clock = clock
        self.run_state = WorkloadRun(workload, clock)
        self.timeline = CoreTimeline()
        self.coarse = CoarseScheduler(conf, self.framework_name) if conf.coarse else None
        self.fine = FineScheduler(conf, self.framework_name) if not conf.coarse else None
        self.driver: SchedulerDriver | None = None
        self.framework_id: str | None = None
        self.failure: str | None = None
        self.submitted_at: float | None = None
        self.registered_at: float | None = None
        self.ended_at: float | None = None
        self.done = threading.Event()

        self._held: dict[str, float] = {}  # task id -> cpus, launched and not terminal
        self._launching: dict[str, float] = {}  # task id -> cpus, launched and not RUNNING yet
        self.launching_timeline = CoreTimeline()  # (t, launching cores, fine executors' cores)
        self._accepted_at: dict[str, float] = {}  # task id -> when this app accepted it
        self.finished_without_running = 0
        self._busy_tasks: set[str] = set()  # emulated Spark tasks running (coarse: ids; fine: Task names)
        self._slots: dict[str, _Slots] = {}  # coarse: registered executors
        self._timers: dict[str, Any] = {}  # coarse: Spark task id -> timer
        self._task_of: dict[str, str] = {}  # fine: Task name -> emulated task id
        self._rr = 0
        self.executors_launched = 0
        self.peak_executors = 0
        self.declines: Counter[str] = Counter()
        self.accepts = 0
        self.offers_seen = 0
        self.task_states: Counter[str] = Counter()
        self.offers_by_agent: Counter[str] = Counter()
        self.history: list[tuple[float, str, str]] = []  # (clock, task id, state) of every update

    # ---------------------------------------------------------------- running

    @property
    def mode(self) -> str:
        return self.conf.mode

    def make_driver(self, kube: Kube, namespace: str, **kw: Any) -> SchedulerDriver:
        caps = [Capability.GPU_RESOURCES] if self.conf.gpus_max else []
        self.driver = SchedulerDriver(
            self,
            self.framework_name,
            namespace,
            roles=[self.conf.framework_role],
            kube=kube,
            failover_timeout=self.conf.failover_timeout_s,
            capabilities=caps,
            labels={"app.kubernetes.io/name": "emulated-spark", "mesoskube.io/spark-mode": self.mode},
            **kw,
        )
        return self.driver

    def start(self, kube: Kube, namespace: str, **driver_kw: Any) -> SchedulerDriver:
        driver = self.make_driver(kube, namespace, **driver_kw)
        self.submitted_at = self.clock()
        self.run_state.start()
        self._record()
        driver.start()
        return driver

    def run(self, kube: Kube, namespace: str, timeout: float | None = None, **driver_kw: Any) -> AppSummary:
        """Submit, wait for the workload to finish (or `timeout`), tear down, summarise."""
        driver = self.start(kube, namespace, **driver_kw)
        self.wait(timeout)
        if driver.status is DriverStatus.RUNNING:
            if not self.done.is_set():
                self.failure = self.failure or f"timed out after {timeout}s"
            driver.stop()
        driver.join(30)
        return self.summary()

    def wait(self, timeout: float | None = None) -> bool:
        """Until the workload is done, the driver stopped, or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done.is_set():
            if self.driver is not None and self.driver.status not in (
                DriverStatus.RUNNING,
                DriverStatus.NOT_STARTED,
            ):
                # _finish stops the driver just before it sets `done`: a stop seen first is not a failure.
                return self.done.wait(2.0)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            self.done.wait(0.2 if left is None else min(0.2, left))
        return self.done.is_set()

    def _finish(self, driver: SchedulerDriver, error: str | None = None) -> None:
        if self.ended_at is not None:
            return
        self.ended_at = self.clock()
        self.failure = self.failure or error
        if self.coarse:
            self.coarse.stopping = True
        if self.fine:
            self.fine.stopping = True
        self._record()
        for timer in self._timers.values():
            timer.cancel()
        driver.stop()  # TEARDOWN: the master kills the executors and rescinds our offers
        self.done.set()  # after the teardown request, so a waiter may exit the process safely

    def _record(self) -> None:
        busy = len(self._busy_tasks) * self.conf.task_cpus
        now = self.clock()
        self.timeline.record(now, round(sum(self._held.values()), 3), busy)
        reserved = 0.0
        if self.fine is not None:  # a per-agent executor still launching counts as launching
            reserved = sum(e.cores for e in self.fine.executors.values() if e.task_id not in self._launching)
        self.launching_timeline.record(now, round(sum(self._launching.values()), 3), round(reserved, 3))

    # ---------------------------------------------------------------- callbacks

    def registered(self, driver: SchedulerDriver, framework_id: str) -> None:
        self.framework_id = framework_id
        self.registered_at = self.clock()
        log.info("%s registered as %s (%s mode)", self.framework_name, framework_id, self.mode)

    def error(self, driver: SchedulerDriver, message: str) -> None:
        self.failure = message
        self.ended_at = self.ended_at or self.clock()
        self.done.set()

    def resource_offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        self.offers_seen += len(offers)
        self.offers_by_agent.update(o.agent_id for o in offers)
        if self.ended_at is not None:
            for o in offers:
                driver.decline(o.id)
            return
        if self.coarse is not None:
            decisions = self.coarse.resource_offers(offers)
        else:
            assert self.fine is not None
            ready = list(self.run_state.pending)
            rnd = self.fine.resource_offers(offers, ready)
            taken = self.run_state.take(len(rnd.launched))  # the same tasks: a prefix of `ready`
            assert {t.id for t in taken} == {t.id for t, _ in rnd.launched}
            for spark_task, info in rnd.launched:
                self._task_of[info.name] = spark_task.id
            decisions = rnd.decisions
        self._apply(driver, decisions)

    def _apply(self, driver: SchedulerDriver, decisions: list[Decision]) -> None:
        for d in decisions:
            if isinstance(d, Launch):
                filters = {"refuseSeconds": d.refuse_seconds} if d.refuse_seconds is not None else None
                for t in d.tasks:
                    self._held[t.name] = t.resources.cpus
                    self._launching[t.name] = t.resources.cpus
                    self._accepted_at[t.name] = self.clock()
                    if t.labels.get("spark-role") == "executor":
                        self.executors_launched += 1
                driver.accept(d.offer_id, list(d.tasks), filters=filters)
                self.accepts += 1
            else:
                if self.ended_at is None:  # offers still in flight at TEARDOWN are not the app's choices
                    self.declines[d.reason.split(" (")[0]] += 1
                driver.decline(d.offer_id, d.refuse_seconds)
        self._record()
        self.peak_executors = max(self.peak_executors, self._executor_count())

    def _executor_count(self) -> int:
        if self.coarse is not None:
            return len(self.coarse.executors)
        assert self.fine is not None
        return len(self.fine.executors)

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        self.task_states[status.state.value] += 1
        self.history.append((self.clock(), status.task_id, status.state.value))
        if status.is_terminal:
            self._held.pop(status.task_id, None)
        if status.state == TaskState.RUNNING or status.is_terminal:  # launched: no longer launching
            cpus = self._launching.pop(status.task_id, None)
            if cpus is not None and status.state == TaskState.FINISHED:
                self._ran_unseen(status.task_id, cpus)
            if status.is_terminal:
                self._accepted_at.pop(status.task_id, None)
        if status.state in (TaskState.ERROR, TaskState.FAILED, TaskState.LOST, TaskState.DROPPED):
            log.warning("%s", status)
        if self.ended_at is None:
            try:
                if self.coarse is not None:
                    self._coarse_update(driver, status)
                else:
                    self._fine_update(driver, status)
            except WorkloadFailed as e:
                self._finish(driver, str(e))
        self._record()

    def _ran_unseen(self, name: str, cpus: float) -> None:
        """A Task whose first update is TASK_FINISHED: the master saw its pod only after it had
        completed, so no TASK_RUNNING came. Its run did happen (the node ran it for its runSeconds,
        which ended before this update): count it busy, and not launching, over the runSeconds
        before now, not as cores held idle from accept to end."""
        spark_id = self._task_of.get(name)
        t = self.run_state.in_flight.get(spark_id) if spark_id else None
        if t is None:
            return
        self.finished_without_running += 1
        now = self.clock()
        start = max(now - t.seconds, self._accepted_at.get(name, now - t.seconds))
        self.timeline.add(start, now, busy=self.conf.task_cpus)
        self.launching_timeline.add(start, now, held=-cpus)

    # ---------------------------------------------------------------- coarse: executors run tasks

    def _coarse_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        assert self.coarse is not None
        ex_id = status.task_id
        known = ex_id in self.coarse.executors
        ended = self.coarse.status_update(ex_id, status.state)
        if known and status.state == TaskState.RUNNING and ex_id not in self._slots:
            ex = self.coarse.executors[ex_id]
            slots = (ex.cores + self.conf.extra_cores) // self.conf.task_cpus
            self._slots[ex_id] = _Slots(ex_id, slots)
            self._dispatch(driver)
        if ended is not None:
            lost = self._slots.pop(ex_id, None)
            if lost is not None:
                for spark_id in sorted(lost.running):
                    self._busy_tasks.discard(spark_id)
                    timer = self._timers.pop(spark_id, None)
                    if timer is not None:
                        timer.cancel()
                    self.run_state.failed(spark_id)
            if ended.failed and ended.agent_failures >= 2:
                log.warning(
                    "agent %s has %d failed executors: no more executors there",
                    ended.executor.agent,
                    ended.agent_failures,
                )
            if self.ended_at is None:  # not while tearing down: a revive would clear our filters
                driver.revive()  # in case everything was declined before and an executor is now gone
            self._dispatch(driver)

    def _dispatch(self, driver: SchedulerDriver) -> None:
        """Put ready emulated tasks on free executor slots, one per executor per pass."""
        while self.run_state.pending:
            free = [s for s in self._slots.values() if s.free > 0]
            if not free:
                return
            for s in free:
                taken = self.run_state.take(1)
                if not taken:
                    return
                t = taken[0]
                self.run_state.started(t.id)
                s.running.add(t.id)
                self._busy_tasks.add(t.id)
                self._timers[t.id] = driver.call_later(
                    t.seconds, lambda tid=t.id, ex=s.executor: self._coarse_task_done(driver, tid, ex)
                )
        self._record()

    def _coarse_task_done(self, driver: SchedulerDriver, task_id: str, executor: str) -> None:
        self._timers.pop(task_id, None)
        s = self._slots.get(executor)
        if s is None or task_id not in s.running or self.ended_at is not None:
            return
        s.running.discard(task_id)
        self._busy_tasks.discard(task_id)
        self.run_state.finished(task_id)
        if self.run_state.done:
            self._finish(driver)
            return
        self._dispatch(driver)
        self._record()

    # ---------------------------------------------------------------- fine: one Task per Spark task

    def _fine_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        assert self.fine is not None
        name = status.task_id
        if self.fine.is_executor(name):
            orphans = self.fine.status_update(name, status.state)
            for task_name in orphans or []:
                driver.kill_task(task_name)  # they come back KILLED and are retried
            return
        self.fine.status_update(name, status.state)
        spark_id = self._task_of.get(name)
        if spark_id is None:
            return
        if status.state == TaskState.RUNNING:
            self.run_state.started(spark_id)
            self._busy_tasks.add(name)
            return
        if not status.is_terminal:
            return
        self._busy_tasks.discard(name)
        del self._task_of[name]
        if status.state == TaskState.FINISHED:
            stage_done = self.run_state.finished(spark_id)
            if self.run_state.done:
                self._finish(driver)
            elif stage_done:
                driver.revive()  # new tasks were submitted (TaskSchedulerImpl.submitTasks -> revive)
        else:
            self.run_state.failed(spark_id)
            driver.revive()

    # ---------------------------------------------------------------- reporting

    def progress(self) -> Progress:
        now = self.clock()
        held, busy = self.timeline.points[-1][1:] if self.timeline.points else (0.0, 0.0)
        return Progress(
            mode=self.mode,
            elapsed=(self.ended_at or now) - (self.submitted_at or now),
            tasks_done=self.run_state.done_tasks,
            tasks_total=self.run_state.total,
            stage=min(self.run_state.stage + 1, len(self.workload.stages)),
            stages=len(self.workload.stages),
            executors=self._executor_count(),
            cores_held=held,
            cores_busy=busy,
            finished=self.done.is_set(),
        )

    def summary(self, sample_step: float = 0.5) -> AppSummary:
        t0 = self.submitted_at or 0.0
        t1 = self.ended_at or self.clock()
        held_s, busy_s, idle_s = self.timeline.integrate(t0, t1)
        launching_s, fine_executors_s, _ = self.launching_timeline.integrate(t0, t1)
        span = max(t1 - t0, 1e-9)
        lat = self.run_state.latencies
        stats = getattr(self.driver, "stats", None)
        driver_stats = dataclasses.asdict(stats) if dataclasses.is_dataclass(stats) else {}
        return AppSummary(
            app=self.conf.app_name,
            framework=self.framework_name,
            framework_id=self.framework_id,
            mode=self.mode,
            ok=self.failure is None and self.run_state.done,
            error=self.failure,
            makespan_s=round(t1 - t0, 3),
            registration_s=round(self.registered_at - t0, 3) if self.registered_at else None,
            tasks_total=self.run_state.total,
            tasks_done=self.run_state.done_tasks,
            task_retries=sum(self.run_state.failures.values()),
            stages=len(self.workload.stages),
            launch_latency_s={
                "count": len(lat),
                "mean": round(sum(lat) / len(lat), 4) if lat else None,
                "p50": _r(percentile(lat, 50)),
                "p95": _r(percentile(lat, 95)),
                "p99": _r(percentile(lat, 99)),
                "max": _r(max(lat) if lat else None),
            },
            cores_held_core_s=round(held_s, 3),
            cores_busy_core_s=round(busy_s, 3),
            idle_core_s=round(idle_s, 3),
            mean_cores_held=round(held_s / span, 3),
            mean_idle_cores_held=round(idle_s / span, 3),
            peak_cores_held=self.timeline.peak_held(),
            utilisation=round(busy_s / held_s, 4) if held_s else None,
            idle_by_cause_core_s={
                "launching": round(launching_s, 3),
                "fine_executors": round(fine_executors_s, 3),
                "free_slots": round(max(0.0, idle_s - launching_s - fine_executors_s), 3),
            },
            finished_without_running=self.finished_without_running,
            work_core_s=round(self.workload.serial_seconds() * self.conf.task_cpus, 3),
            executors_launched=self.executors_launched,
            peak_executors=self.peak_executors,
            offers_seen=self.offers_seen,
            accepts=self.accepts,
            declines=dict(self.declines),
            driver=driver_stats,
            conf=self.conf.describe(),
            timeline=self.timeline.sample(t0, t1, sample_step),
        )


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


@dataclass
class AppSummary:
    app: str
    framework: str
    framework_id: str | None
    mode: str
    ok: bool
    error: str | None
    makespan_s: float
    registration_s: float | None
    tasks_total: int
    tasks_done: int
    task_retries: int
    stages: int
    launch_latency_s: dict[str, Any]
    cores_held_core_s: float
    cores_busy_core_s: float
    idle_core_s: float
    mean_cores_held: float
    mean_idle_cores_held: float
    peak_cores_held: float
    utilisation: float | None
    idle_by_cause_core_s: dict[str, float]
    finished_without_running: int
    work_core_s: float
    executors_launched: int
    peak_executors: int
    offers_seen: int
    accepts: int
    declines: dict[str, int]
    driver: dict[str, int]
    conf: dict[str, Any]
    timeline: list[tuple[float, float, float]]

    def to_dict(self, with_timeline: bool = True) -> dict[str, Any]:
        d = dict(vars(self))
        if not with_timeline:
            d.pop("timeline")
        return d

    def table(self) -> list[tuple[str, str]]:
        lat = self.launch_latency_s

        def f(x: float | None, unit: str = "s") -> str:
            return "-" if x is None else f"{x:.3f}{unit}"

        return [
            ("application", f"{self.app} ({self.mode} mode, framework {self.framework})"),
            ("result", "ok" if self.ok else f"FAILED: {self.error}"),
            ("makespan", f(self.makespan_s)),
            (
                "tasks",
                f"{self.tasks_done}/{self.tasks_total} in {self.stages} stages, {self.task_retries} retries",
            ),
            ("launch latency p50/p95/p99", f"{f(lat['p50'])} / {f(lat['p95'])} / {f(lat['p99'])}"),
            ("executors launched (peak)", f"{self.executors_launched} ({self.peak_executors})"),
            ("cores held: mean / peak", f"{self.mean_cores_held:.2f} / {self.peak_cores_held:g}"),
            ("idle cores held (mean)", f"{self.mean_idle_cores_held:.2f}"),
            ("utilisation of held cores", "-" if self.utilisation is None else f"{self.utilisation:.1%}"),
            (
                "idle cores by cause (mean)",
                ", ".join(
                    f"{k.replace('_', ' ')} {v / max(self.makespan_s, 1e-9):.2f}"
                    for k, v in self.idle_by_cause_core_s.items()
                ),
            ),
            ("offers seen / accepted", f"{self.offers_seen} / {self.accepts}"),
            ("declines", ", ".join(f"{k}: {v}" for k, v in sorted(self.declines.items())) or "none"),
        ]
