"""Placement of Spark's MesosFineGrainedSchedulerBackend (pure: offers + ready tasks in, decisions out).

Per offer round (resourceOffers):
1. offers failing spark.mesos.constraints: declined for rejectOfferDurationForUnmetConstraints;
2. usable offers: memory >= executor memory + overhead and cpus >= mesosExecutor.cores +
   spark.task.cpus, or the agent already has this app's executor and cpus >= spark.task.cpus;
   the others are declined (default filter);
3. worker cores per usable offer: its whole cpus, minus mesosExecutor.cores when the agent has no
   executor yet; ready Spark tasks are dealt round-robin, one per offer per pass, spark.task.cpus
   each (TaskSchedulerImpl.resourceOffers without locality or shuffling);
4. an offer that got tasks is accepted with refuse_seconds 1 for its leftover; the first launch on
   an agent also launches that agent's executor (mesosExecutor.cores and the executor memory, held
   for the application's lifetime -- never released, as in Spark); usable offers that got no task
   are declined with the default filter.

Here the per-agent executor is its own Task (it has no run time: it holds its resources until the
app ends), and each Spark task is a Task with `spark.task.cpus` cpus, no memory of its own,
`executor` = the executor's task id, and `runSeconds` = its emulated duration.
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
from mesoskube.frameworks.sdk.types import Offer
from mesoskube.frameworks.spark.coarse import EXECUTOR_IMAGE, Decision, Decline, Launch
from mesoskube.frameworks.spark.conf import SparkConf
from mesoskube.frameworks.spark.workload import EmulatedSparkTask
from mesoskube.resources import Resources

LAUNCH_REFUSE_SECONDS = 1.0  # MesosFineGrainedSchedulerBackend: Filters.setRefuseSeconds(1)


@dataclass
class FineExecutor:
    task_id: str
    agent: str
    cores: float
    mem: float
    state: TaskState | None = None


@dataclass
class FineRound:
    decisions: list[Decision]
    launched: list[tuple[EmulatedSparkTask, TaskInfo]]  # a prefix of the ready tasks given
    new_executors: list[FineExecutor]


@dataclass
class FineScheduler:
    conf: SparkConf
    prefix: str
    stopping: bool = False
    executors: dict[str, FineExecutor] = field(default_factory=dict)  # by agent
    executor_agents: dict[str, str] = field(default_factory=dict)  # executor task id -> agent
    task_agents: dict[str, str] = field(default_factory=dict)  # Spark task Task name -> agent
    executors_launched: int = 0

    def task_name(self, task: EmulatedSparkTask) -> str:
        return f"{self.prefix}-{task.id}"

    def _usable(self, o: Offer) -> bool:
        r = o.resources
        tc = self.conf.task_cpus
        fresh = r.mem + 1e-9 >= self.conf.executor_total_memory_mb and r.cpus + 1e-9 >= (
            self.conf.mesos_executor_cores + tc
        )
        return fresh or (o.agent_id in self.executors and r.cpus + 1e-9 >= tc)

    def _worker_cores(self, o: Offer) -> int:
        cpus = o.resources.cpus
        if o.agent_id not in self.executors:
            cpus -= self.conf.mesos_executor_cores
        return max(0, math.floor(cpus + 1e-9))

    def resource_offers(self, offers: Sequence[Offer], ready: Sequence[EmulatedSparkTask]) -> FineRound:
        if self.stopping:
            return FineRound([Decline(o.id, o.agent_id, None, "stopping") for o in offers], [], [])
        decisions: list[Decision] = []
        usable: list[Offer] = []
        for o in offers:
            if not self.conf.constraints.matches(o.attributes):
                unmet = "; ".join(self.conf.constraints.unmet(o.attributes))
                decisions.append(
                    Decline(
                        o.id, o.agent_id, self.conf.unmet_constraints_refuse_s, f"unmet constraints ({unmet})"
                    )
                )
            elif self._usable(o):
                usable.append(o)
            else:
                decisions.append(Decline(o.id, o.agent_id, None, "too small for an executor and a task"))

        # Deal ready tasks round-robin over the usable offers' worker cores.
        free = {o.id: self._worker_cores(o) for o in usable}
        assigned: dict[str, list[EmulatedSparkTask]] = {o.id: [] for o in usable}
        queue = list(ready)
        order = {t.id: i for i, t in enumerate(queue)}
        nxt = 0
        progress = True
        while progress and nxt < len(queue):
            progress = False
            for o in usable:
                if nxt >= len(queue):
                    break
                if free[o.id] >= self.conf.task_cpus:
                    assigned[o.id].append(queue[nxt])
                    free[o.id] -= self.conf.task_cpus
                    nxt += 1
                    progress = True

        launched: list[tuple[EmulatedSparkTask, TaskInfo]] = []
        new_executors: list[FineExecutor] = []
        for o in usable:
            tasks = assigned[o.id]
            if not tasks:
                decisions.append(Decline(o.id, o.agent_id, None, "no ready task"))
                continue
            infos: list[TaskInfo] = []
            executor = self.executors.get(o.agent_id)
            if executor is None:
                executor = self._new_executor(o.agent_id)
                new_executors.append(executor)
                infos.append(self._executor_task(executor))
            for t in tasks:
                info = self._spark_task(t, executor)
                infos.append(info)
                launched.append((t, info))
                self.task_agents[info.name] = o.agent_id
            used = Resources.total(i.resources.to_resources() for i in infos)
            assert o.resources.contains(used), f"fine placement overcommitted {o}: {used}"
            decisions.append(Launch(o.id, o.agent_id, tuple(infos), LAUNCH_REFUSE_SECONDS))
        launched.sort(key=lambda pair: order[pair[0].id])
        return FineRound(decisions, launched, new_executors)

    def _new_executor(self, agent: str) -> FineExecutor:
        self.executors_launched += 1
        ex = FineExecutor(
            task_id=f"{self.prefix}-fexec-{self.executors_launched}",
            agent=agent,
            cores=self.conf.mesos_executor_cores,
            mem=float(self.conf.executor_total_memory_mb),
        )
        self.executors[agent] = ex
        self.executor_agents[ex.task_id] = agent
        return ex

    def _executor_task(self, ex: FineExecutor) -> TaskInfo:
        env = {
            "SPARK_EXECUTOR_MEMORY": f"{self.conf.executor_memory_mb}m",
            "SPARK_APP_NAME": self.conf.app_name,
            "MESOSKUBE_EMULATED": "true",
        }
        return TaskInfo(
            name=ex.task_id,
            resources=ResourceQuantities(cpus=ex.cores, mem=ex.mem),
            container=ContainerInfo(
                image=EXECUTOR_IMAGE,
                command=["emulated-spark-fine-executor"],
                env=[EnvVar(name=k, value=v) for k, v in env.items()],
            ),
            labels={"spark-role": "executor"},
        )

    def _spark_task(self, t: EmulatedSparkTask, ex: FineExecutor) -> TaskInfo:
        return TaskInfo(
            name=self.task_name(t),
            resources=ResourceQuantities(cpus=self.conf.task_cpus),
            container=ContainerInfo(image=EXECUTOR_IMAGE, command=["emulated-spark-task"]),
            labels={"spark-role": "task", "spark-stage": str(t.stage)},
            runSeconds=t.seconds,
            executor=ex.task_id,
        )

    # ---------------------------------------------------------------- status

    def is_executor(self, task_id: str) -> bool:
        return task_id in self.executor_agents

    def status_update(self, task_id: str, state: TaskState) -> list[str] | None:
        """Track executors and tasks. An executor that ended returns the Spark tasks it had (the
        caller kills and retries them); the agent gets a new executor with its next task."""
        if task_id in self.executor_agents:
            agent = self.executor_agents[task_id]
            ex = self.executors.get(agent)
            if state not in TERMINAL_TASK_STATES:
                if ex is not None and ex.task_id == task_id:
                    ex.state = state
                return None
            del self.executor_agents[task_id]
            if ex is not None and ex.task_id == task_id:
                del self.executors[agent]
            return [name for name, a in self.task_agents.items() if a == agent]
        if state in TERMINAL_TASK_STATES:
            self.task_agents.pop(task_id, None)
        return None

    def held(self) -> Resources:
        return Resources.total(Resources(cpus=e.cores, mem=e.mem) for e in self.executors.values())
