"""An EMULATED Spark workload: no Spark code runs. An application is an ordered list of stages, each
of N tasks with a run time; a stage becomes ready when the previous stage has finished (a linear
DAG, as a chain of shuffles). How a task "runs" depends on the mode:

- coarse: the framework runs it itself on a free slot of one of its executors (an in-process timer
  of the task's duration), as Spark's driver schedules tasks on executors it already holds;
- fine: it is launched as its own Task with `runSeconds` = its duration, and the fake node
  completes the task's pod after that long.

File format (YAML or JSON):

    name: etl          # optional
    seed: 7            # optional: jitter is drawn from this seed, so both modes get the same tasks
    jitter: 0.2        # optional: each duration is scaled by a uniform factor in [1-j, 1+j]
    stages:
      - {tasks: 40, seconds: 2.0}
      - {tasks: 10, seconds: 5.0, jitter: 0.0}   # per-stage jitter overrides the global one
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mesoskube.frameworks.spark.conf import TASK_MAX_FAILURES


class EmulatedStage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: Annotated[int, Field(ge=1, le=100000, description="Number of tasks in the stage.")]
    seconds: Annotated[float, Field(ge=0, le=86400, description="Run time of each task.")]
    jitter: Annotated[float | None, Field(ge=0, le=1, description="Overrides the workload's jitter.")] = None


class EmulatedWorkload(BaseModel):
    """An emulated Spark application: stages of timed tasks."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    seed: int = 0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.0
    stages: list[EmulatedStage] = Field(min_length=1, max_length=1000)

    @classmethod
    def load(cls, path: str | Path) -> EmulatedWorkload:
        text = Path(path).read_text()
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        return cls.model_validate(data)

    @property
    def total_tasks(self) -> int:
        return sum(s.tasks for s in self.stages)

    def durations(self) -> list[list[float]]:
        """Each task's run time, per stage; deterministic for a given seed."""
        rng = random.Random(self.seed)
        out = []
        for stage in self.stages:
            j = self.jitter if stage.jitter is None else stage.jitter
            out.append(
                [
                    round(stage.seconds * (1 + rng.uniform(-j, j)), 3) if j else stage.seconds
                    for _ in range(stage.tasks)
                ]
            )
        return out

    def serial_seconds(self) -> float:
        """Sum of all task run times (the work, in task-seconds of one slot each)."""
        return sum(sum(d) for d in self.durations())


@dataclass
class EmulatedSparkTask:
    """One attempt at one task of the emulated workload."""

    stage: int
    index: int
    seconds: float
    attempt: int = 0
    ready_at: float = 0.0
    started_at: float | None = None

    @property
    def key(self) -> str:
        """Stable across attempts."""
        return f"s{self.stage}-t{self.index}"

    @property
    def id(self) -> str:
        """Unique per attempt (a DNS-label fragment)."""
        return f"s{self.stage}t{self.index}a{self.attempt}"


class WorkloadFailed(RuntimeError):
    pass


@dataclass
class WorkloadRun:
    """Progress through an emulated workload (pure; the clock is injected).

    ready -> (take) -> launched -> (started) -> running -> (finished | failed -> ready again)
    """

    workload: EmulatedWorkload
    clock: Callable[[], float]
    stage: int = -1
    pending: deque[EmulatedSparkTask] = field(default_factory=deque)
    in_flight: dict[str, EmulatedSparkTask] = field(default_factory=dict)  # by id
    finished_in_stage: int = 0
    done_tasks: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # by key
    latencies: list[float] = field(default_factory=list)  # ready -> started, seconds
    stage_times: list[tuple[float, float | None]] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None

    def __post_init__(self) -> None:
        self._durations = self.workload.durations()

    @property
    def total(self) -> int:
        return self.workload.total_tasks

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    @property
    def running(self) -> int:
        return sum(1 for t in self.in_flight.values() if t.started_at is not None)

    def start(self) -> None:
        """The application is submitted: stage 0's tasks are ready now."""
        self.started_at = self.clock()
        self._next_stage()

    def _next_stage(self) -> bool:
        now = self.clock()
        if self.stage >= 0:
            self.stage_times[-1] = (self.stage_times[-1][0], now)
        self.stage += 1
        self.finished_in_stage = 0
        if self.stage >= len(self.workload.stages):
            self.finished_at = now
            return False
        self.stage_times.append((now, None))
        for i, seconds in enumerate(self._durations[self.stage]):
            self.pending.append(EmulatedSparkTask(self.stage, i, seconds, ready_at=now))
        return True

    def take(self, n: int | None = None) -> list[EmulatedSparkTask]:
        """Hand out up to n ready tasks (all when n is None) for launching."""
        out = []
        while self.pending and (n is None or len(out) < n):
            t = self.pending.popleft()
            self.in_flight[t.id] = t
            out.append(t)
        return out

    def give_back(self, tasks: list[EmulatedSparkTask]) -> None:
        """Tasks taken but not launched after all go back to the front, in order."""
        for t in reversed(tasks):
            self.in_flight.pop(t.id, None)
            self.pending.appendleft(t)

    def started(self, task_id: str) -> EmulatedSparkTask | None:
        t = self.in_flight.get(task_id)
        if t is None or t.started_at is not None:
            return None
        t.started_at = self.clock()
        self.latencies.append(t.started_at - t.ready_at)
        return t

    def finished(self, task_id: str) -> bool:
        """Returns True when this completed a stage (the next one is ready, or the app is done)."""
        t = self.in_flight.pop(task_id, None)
        if t is None:
            return False
        if t.started_at is None:  # completion without a seen start: count a zero-wait start
            t.started_at = self.clock()
            self.latencies.append(t.started_at - t.ready_at)
        self.done_tasks += 1
        self.finished_in_stage += 1
        if self.finished_in_stage >= self.workload.stages[self.stage].tasks:
            self._next_stage()
            return True
        return False

    def failed(self, task_id: str) -> EmulatedSparkTask | None:
        """The attempt failed or was lost: retry it (a new attempt, ready now) unless it failed
        spark.task.maxFailures times, which fails the application (WorkloadFailed)."""
        t = self.in_flight.pop(task_id, None)
        if t is None:
            return None
        n = self.failures.get(t.key, 0) + 1
        self.failures[t.key] = n
        if n >= TASK_MAX_FAILURES:
            raise WorkloadFailed(
                f"task {t.key} failed {n} times (spark.task.maxFailures={TASK_MAX_FAILURES})"
            )
        retry = EmulatedSparkTask(t.stage, t.index, t.seconds, attempt=t.attempt + 1, ready_at=self.clock())
        self.pending.appendleft(retry)
        return retry

    def makespan(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at
