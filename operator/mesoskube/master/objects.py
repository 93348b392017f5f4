"""Small readers of API objects as the master caches them (plain dicts), shared by its modules."""

from __future__ import annotations

import math

from mesoskube.allocator.snapshot import RolePolicy
from mesoskube.api.models import TERMINAL_TASK_STATES, OfferPhase, TaskState
from mesoskube.master import LABEL_TASK
from mesoskube.resources import SCALARS, Resources

_RESOURCES_MEMO = "__mesoskube_resources"


def ns_name(key: str) -> tuple[str, str]:
    ns, _, name = key.partition("/")
    return ns, name


def framework_key(ns: str, name: str) -> str:
    return f"{ns}/{name}"


def is_task_pod(pod: dict, scheduler_name: str) -> bool:
    """A pod whose state the master mirrors into a Task: one it created (labelled with its task),
    or one naming its scheduler, which a task may adopt (the Task then takes the pod's name)."""
    if LABEL_TASK in (pod["metadata"].get("labels") or {}):
        return True
    return (pod.get("spec") or {}).get("schedulerName") == scheduler_name


def task_state(task: dict) -> TaskState | None:
    raw = (task.get("status") or {}).get("state")
    return TaskState(raw) if raw else None


def is_terminal(task: dict) -> bool:
    return task_state(task) in TERMINAL_TASK_STATES


def offer_phase(offer: dict) -> str:
    return (offer.get("status") or {}).get("phase") or OfferPhase.OUTSTANDING.value


def resources_of(body: dict) -> Resources:
    """An Offer's or Task's spec.resources, parsed once per object version (the body is replaced
    on every update, so the memo can never go stale)."""
    memo = body.get(_RESOURCES_MEMO)
    if memo is None:
        memo = body[_RESOURCES_MEMO] = Resources.from_mapping(body["spec"]["resources"])
    return memo


def add_into(acc: list[float], r: Resources) -> None:
    acc[0] += r.cpus
    acc[1] += r.mem
    acc[2] += r.disk
    acc[3] += r.gpus


def role_policy(name: str, body: dict) -> RolePolicy:
    spec = body.get("spec") or {}
    quota = spec.get("quota")
    limit = None
    if quota:
        limit = Resources(**{n: float(quota[n]) if quota.get(n) is not None else math.inf for n in SCALARS})
    return RolePolicy(name=name, weight=float(spec.get("weight") or 1.0), quota_limit=limit)
