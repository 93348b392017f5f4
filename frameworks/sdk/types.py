"""Value objects the scheduler callbacks receive, built from the custom resources' dicts.

Fields come from the pydantic models in `mesoskube.api.models` (one definition of the schema);
these classes only add the names Mesos framework authors know (`offer.id`, `offer.agent_id`,
`status.task_id`, `status.state`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any

from mesoskube.api.models import (
    TERMINAL_TASK_STATES,
    OfferPhase,
    OfferSpec,
    ResourceQuantities,
    TaskSpec,
    TaskState,
)
from mesoskube.api.models import TaskStatus as TaskStatusModel
from mesoskube.master import LABEL_TASK_ID
from mesoskube.resources import Resources

# Task states Spark (and Mesos' own helpers) count as failures of the task's agent or executor.
FAILED_TASK_STATES = frozenset(
    {TaskState.FAILED, TaskState.LOST, TaskState.ERROR, TaskState.DROPPED, TaskState.GONE}
)


class DriverStatus(StrEnum):
    """What the driver's calls return (Mesos `Status`)."""

    NOT_STARTED = "DRIVER_NOT_STARTED"
    RUNNING = "DRIVER_RUNNING"
    ABORTED = "DRIVER_ABORTED"
    STOPPED = "DRIVER_STOPPED"


class StatusSource(StrEnum):
    MASTER = "SOURCE_MASTER"  # from a Task object or a reconciliation answer
    DRIVER = "SOURCE_DRIVER"  # synthesised by the driver (e.g. launching on an offer that is gone)


@dataclass(frozen=True)
class Offer:
    """One outstanding Offer object: one agent's unallocated resources for this framework."""

    id: str
    spec: OfferSpec
    phase: OfferPhase | None = None
    received_at: float = field(default_factory=time.monotonic, compare=False)

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> Offer:
        status = obj.get("status") or {}
        phase = status.get("phase")
        return cls(
            id=obj["metadata"]["name"],
            spec=OfferSpec.model_validate(obj.get("spec") or {}),
            phase=OfferPhase(phase) if phase else None,
        )

    @classmethod
    def build(
        cls,
        id: str,
        agent: str,
        cpus: float = 0,
        mem: float = 0,
        disk: float = 0,
        gpus: int = 0,
        ports: str | None = None,
        attributes: dict[str, str] | None = None,
        framework: str = "test",
        role: str = "*",
    ) -> Offer:
        """An offer made in code (unit tests, simulations)."""
        spec = OfferSpec(
            framework=framework,
            role=role,
            agent=agent,
            resources=ResourceQuantities(cpus=cpus, mem=mem, disk=disk, gpus=gpus, ports=ports),
            attributes=dict(attributes or {}),
        )
        return cls(id=id, spec=spec, phase=OfferPhase.OUTSTANDING)

    @property
    def agent_id(self) -> str:
        return self.spec.agent

    @property
    def hostname(self) -> str:
        return self.spec.agent

    @property
    def role(self) -> str:
        return self.spec.role

    @property
    def attributes(self) -> dict[str, str]:
        return self.spec.attributes

    @cached_property
    def resources(self) -> Resources:
        return self.spec.resources.to_resources()

    @property
    def expires_at(self) -> datetime | None:
        return _parse_time(self.spec.expiresAt)

    def __str__(self) -> str:
        return f"offer {self.id} on {self.agent_id}: {self.resources}"


@dataclass(frozen=True)
class TaskStatus:
    """A task status update (Mesos TaskStatus)."""

    task_id: str
    state: TaskState
    reason: str | None = None
    message: str | None = None
    agent_id: str | None = None
    executor_id: str | None = None
    source: StatusSource = StatusSource.MASTER
    timestamp: float = field(default_factory=time.time, compare=False)
    labels: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_task(cls, obj: dict[str, Any]) -> TaskStatus:
        """The status a Task object reports. A Task without a state is TASK_STAGING: the master
        writes no status until the pod has a real state (one write per task saved)."""
        status = TaskStatusModel.model_validate(obj.get("status") or {})
        spec = obj.get("spec") or {}
        try:
            parsed = TaskSpec.model_validate(spec)
            agent, executor, labels = parsed.agent, parsed.executor, parsed.labels
        except ValueError:  # a spec we cannot read must not hide the state update
            agent, executor, labels = spec.get("agent"), spec.get("executor"), spec.get("labels") or {}
        return cls(
            # A Task standing for another id (a launch refused because the id was taken, a Mesos
            # id that is not a DNS label) carries the id in a label.
            task_id=(obj["metadata"].get("labels") or {}).get(LABEL_TASK_ID) or obj["metadata"]["name"],
            state=status.state or TaskState.STAGING,
            reason=status.reason,
            message=status.message,
            agent_id=agent,
            executor_id=executor,
            labels=dict(labels or {}),
        )

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_TASK_STATES

    @property
    def is_failure(self) -> bool:
        return self.state in FAILED_TASK_STATES

    def __str__(self) -> str:
        extra = f" ({self.reason}{': ' + self.message if self.message else ''})" if self.reason else ""
        return f"{self.task_id} {self.state.value}{extra}"


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
