"""Pod phase and container states -> Mesos task state, reason and message (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from mesoskube.api.models import TaskState


@dataclass(frozen=True, slots=True)
class TaskUpdate:
    state: TaskState
    reason: str
    message: str = ""


def _waiting_problem(pod: dict) -> tuple[str, str] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in {
            "ErrImagePull",
            "ImagePullBackOff",
            "InvalidImageName",
            "CreateContainerConfigError",
            "CreateContainerError",
        }:
            return waiting["reason"], waiting.get("message") or ""
    return None


def _terminated(pod: dict) -> dict:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return term
    return {}


def from_pod(pod: dict) -> TaskUpdate:
    """The state a task is in, judged from its pod alone."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Succeeded":
        term = _terminated(pod)
        return TaskUpdate(
            TaskState.FINISHED, "REASON_COMMAND_EXECUTOR_COMPLETED", term.get("reason") or "Completed"
        )
    if phase == "Failed":
        term = _terminated(pod)
        if status.get("reason") == "Evicted":
            return TaskUpdate(
                TaskState.FAILED, "REASON_CONTAINER_PREEMPTED", status.get("message") or "evicted"
            )
        code = term.get("exitCode")
        if term.get("reason") == "OOMKilled":
            return TaskUpdate(
                TaskState.FAILED,
                "REASON_CONTAINER_LIMITATION_MEMORY",
                f"OOM-killed: the task exceeded its memory limit (exit code {code})",
            )
        msg = term.get("message") or term.get("reason") or status.get("message") or "container failed"
        return TaskUpdate(
            TaskState.FAILED,
            "REASON_COMMAND_EXECUTOR_FAILED",
            f"exit code {code}: {msg}" if code is not None else msg,
        )
    if phase == "Running":
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        if ready:
            return TaskUpdate(TaskState.RUNNING, "REASON_POD_RUNNING")
        return TaskUpdate(TaskState.STARTING, "REASON_POD_STARTING", "containers started, not ready yet")
    if problem := _waiting_problem(pod):
        return TaskUpdate(TaskState.STAGING, f"REASON_{problem[0].upper()}", problem[1])
    if phase == "Unknown":
        return TaskUpdate(TaskState.LOST, "REASON_AGENT_DISCONNECTED", "pod phase Unknown")
    return TaskUpdate(TaskState.STAGING, "REASON_POD_PENDING", "pod created on the agent")


def for_missing_pod(kill_requested: bool, agent_present: bool) -> TaskUpdate:
    """A non-terminal task whose pod disappeared."""
    if kill_requested:
        return TaskUpdate(
            TaskState.KILLED, "REASON_TASK_KILLED_DURING_LAUNCH", "killed on request (spec.kill)"
        )
    if not agent_present:
        return TaskUpdate(TaskState.LOST, "REASON_AGENT_REMOVED", "the agent's node was removed")
    return TaskUpdate(TaskState.KILLED, "REASON_POD_DELETED", "the task's pod was deleted outside the master")
