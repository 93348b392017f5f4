"""Placement of Spark's MesosCoarseGrainedSchedulerBackend (pure: offers in, decisions out).

Per offer round (resourceOffers):
1. stopping, or at the executor limit: decline every offer (default filter);
2. offers whose attributes fail spark.mesos.constraints: decline for
   rejectOfferDurationForUnmetConstraints;
3. the rest, round-robin (buildMesosTasks): each pass over the offers launches at most one executor
   per offer, while it fits: cores > 0, cores <= the offer's whole cpus, total + cores <= max
   cores, executor memory + overhead <= the offer's memory, the agent has had fewer than
   MAX_AGENT_FAILURES failed executors; passes repeat until one launches nothing;
4. an offer that got executors is accepted (default filter for the leftover); one that got none is
   declined for rejectOfferDurationForReachedMaxCores once cores.max is reached, else with the
   default filter.
A terminal executor frees its cores (and counts as a failure of its agent if it failed or was
lost); the caller then revives offers.

Executor size: spark.executor.cores when set; unset, min(offered whole cpus, cores left to
cores.max) with one executor per agent (the reference's "one executor per agent" rule; Spark 2+
can start a second one on a later offer of the same agent -- here it does not). Ports are not
modelled (no spark.*.port keys are read, so no port is required).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from mesoskube.api.models import (
    TERMINAL_TASK_STATES,
    ContainerInfo,
    EnvVar,
    ResourceQuantities,
    TaskInfo,
    TaskState,
)
from mesoskube.frameworks.sdk.types import FAILED_TASK_STATES, Offer
from mesoskube.frameworks.spark.conf import MAX_AGENT_FAILURES, SparkConf
from mesoskube.resources import Resources

EXECUTOR_IMAGE = "registry.k8s.io/pause:3.10"  # nothing runs on fake nodes; recorded only


@dataclass(frozen=True)
class Launch:
    offer_id: str
    agent: str
    tasks: tuple[TaskInfo, ...]
    refuse_seconds: float | None = None  # filter on the leftover; None = the framework's default


@dataclass(frozen=True)
class Decline:
    offer_id: str
    agent: str
    refuse_seconds: float | None  # None = the framework's default (5 s)
    reason: str


Decision = Launch | Decline


@dataclass
class Executor:
    task_id: str
    agent: str
    cores: int
    mem: float
    gpus: int = 0
    state: TaskState | None = None

    @property
    def registered(self) -> bool:
        """Running, so the driver can schedule Spark tasks on it."""
        return self.state == TaskState.RUNNING


@dataclass
class ExecutorEnded:
    executor: Executor
    state: TaskState
    failed: bool
    agent_failures: int


@dataclass
class CoarseScheduler:
    conf: SparkConf
    prefix: str  # task-name prefix, unique per framework in its namespace (Task names are)
    executor_limit: int | None = None  # dynamic allocation's target; None = no limit
    stopping: bool = False
    executors: dict[str, Executor] = field(default_factory=dict)
    agent_failures: dict[str, int] = field(default_factory=dict)
    total_cores: int = 0
    total_gpus: int = 0
    launched: int = 0

    # ---------------------------------------------------------------- offers

    @property
    def max_cores(self) -> float:
        mc = self.conf.max_cores
        return math.inf if mc is None else mc

    def _executor_cores(self, offer_cpus: int) -> int:
        if self.conf.executor_cores:
            return self.conf.executor_cores
        left = self.max_cores - self.total_cores
        return int(min(offer_cpus, left))

    def _agents_with_executors(self) -> set[str]:
        return {e.agent for e in self.executors.values()}

    def _can_launch(self, agent: str, remaining: Resources, busy_agents: set[str]) -> bool:
        offer_cpus = math.floor(remaining.cpus + 1e-9)
        cpus = self._executor_cores(offer_cpus)
        return (
            cpus > 0
            and cpus <= offer_cpus
            and cpus + self.total_cores <= self.max_cores
            and self.conf.executor_total_memory_mb <= remaining.mem + 1e-9
            and (self.executor_limit is None or len(self.executors) < self.executor_limit)
            and self.agent_failures.get(agent, 0) < MAX_AGENT_FAILURES
            and (self.conf.executor_cores is not None or agent not in busy_agents)
        )

    def resource_offers(self, offers: Sequence[Offer]) -> list[Decision]:
        if self.stopping or (self.executor_limit is not None and len(self.executors) >= self.executor_limit):
            why = "stopping" if self.stopping else "executor limit reached"
            return [Decline(o.id, o.agent_id, None, why) for o in offers]
        decisions: list[Decision] = []
        matched: list[Offer] = []
        for o in offers:
            if self.conf.constraints.matches(o.attributes):
                matched.append(o)
            else:
                unmet = "; ".join(self.conf.constraints.unmet(o.attributes))
                decisions.append(
                    Decline(
                        o.id, o.agent_id, self.conf.unmet_constraints_refuse_s, f"unmet constraints ({unmet})"
                    )
                )
        tasks = self._build_tasks(matched)
        for o in matched:
            if tasks.get(o.id):
                decisions.append(Launch(o.id, o.agent_id, tuple(tasks[o.id])))
            elif self.total_cores >= self.max_cores:
                decisions.append(
                    Decline(o.id, o.agent_id, self.conf.reached_max_cores_refuse_s, "reached spark.cores.max")
                )
            else:
                decisions.append(Decline(o.id, o.agent_id, None, "offer too small for an executor"))
        return decisions

    def _build_tasks(self, offers: Sequence[Offer]) -> dict[str, list[TaskInfo]]:
        tasks: dict[str, list[TaskInfo]] = {o.id: [] for o in offers}
        remaining = {o.id: o.resources for o in offers}
        busy_agents = self._agents_with_executors()
        launch = True
        while launch:  # round-robin: one executor per offer per pass
            launch = False
            for o in offers:
                left = remaining[o.id]
                if not self._can_launch(o.agent_id, left, busy_agents):
                    continue
                launch = True
                cores = self._executor_cores(math.floor(left.cpus + 1e-9))
                gpus = int(min(max(0, self.conf.gpus_max - self.total_gpus), left.gpus))
                mem = float(self.conf.executor_total_memory_mb)
                info = self._executor_task(cores, mem, gpus)
                tasks[o.id].append(info)
                remaining[o.id] = left - Resources(cpus=cores, mem=mem, gpus=gpus)
                self.executors[info.name] = Executor(info.name, o.agent_id, cores, mem, gpus)
                busy_agents.add(o.agent_id)
                self.total_cores += cores
                self.total_gpus += gpus
        return tasks

    def _executor_task(self, cores: int, mem: float, gpus: int) -> TaskInfo:
        self.launched += 1
        name = f"{self.prefix}-exec-{self.launched}"
        env = {
            "SPARK_EXECUTOR_CORES": str(cores),
            "SPARK_EXECUTOR_MEMORY": f"{self.conf.executor_memory_mb}m",
            "SPARK_APP_NAME": self.conf.app_name,
            "MESOSKUBE_EMULATED": "true",
        }
        return TaskInfo(
            name=name,
            resources=ResourceQuantities(cpus=cores, mem=mem, gpus=gpus),
            container=ContainerInfo(
                image=EXECUTOR_IMAGE,
                command=["emulated-spark-executor"],
                env=[EnvVar(name=k, value=v) for k, v in env.items()],
            ),
            labels={"spark-role": "executor", "spark-exec-id": str(self.launched)},
        )

    # ---------------------------------------------------------------- status

    def status_update(self, task_id: str, state: TaskState) -> ExecutorEnded | None:
        """Track an executor's state; a terminal one frees its cores (the caller revives)."""
        ex = self.executors.get(task_id)
        if ex is None:
            return None
        if state not in TERMINAL_TASK_STATES:
            ex.state = state
            return None
        del self.executors[task_id]
        self.total_cores -= ex.cores
        self.total_gpus -= ex.gpus
        failed = state in FAILED_TASK_STATES
        if failed:
            self.agent_failures[ex.agent] = self.agent_failures.get(ex.agent, 0) + 1
        return ExecutorEnded(ex, state, failed, self.agent_failures.get(ex.agent, 0))

    def blacklisted_agents(self) -> list[str]:
        return sorted(a for a, n in self.agent_failures.items() if n >= MAX_AGENT_FAILURES)
