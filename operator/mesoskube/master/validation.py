"""Checking a framework's accept against its offer (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mesoskube.api.models import DEFAULT_ROLE, TaskInfo
from mesoskube.master.cache import pod_requests
from mesoskube.resources import SCALARS, Resources, format_ranges, subtract_ranges


def _port_clash(wanted: list[tuple[str, Resources]]) -> str:
    """Two tasks of one accept on one host port would both be launched on the same node."""
    owner: dict[int, str] = {}
    clashes: list[str] = []
    for name, r in wanted:
        for lo, hi in r.ports:
            for port in range(lo, hi + 1):
                if port in owner and owner[port] != name:
                    clashes.append(f"{port} ({owner[port]} and {name})")
                owner.setdefault(port, name)
                if len(clashes) >= 5:
                    return ", ".join(clashes)
    return ", ".join(clashes)


@dataclass(frozen=True, slots=True)
class AcceptVerdict:
    ok: bool
    message: str = ""
    used: Resources = field(default_factory=Resources)


def check_accept(offered: Resources, tasks: list[TaskInfo], existing_task_names: set[str]) -> AcceptVerdict:
    """All tasks launch, or none: Mesos fails every task of an ACCEPT whose operations exceed the offer."""
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return AcceptVerdict(False, f"task names repeat within the accept: {', '.join(dupes)}")
    taken = sorted(set(names) & existing_task_names)
    if taken:
        return AcceptVerdict(False, f"task names already used in this framework: {', '.join(taken)}")
    wanted = [(t.name, t.resources.to_resources()) for t in tasks]
    clash = _port_clash(wanted)
    if clash:
        return AcceptVerdict(
            False, f"tasks ask for the same host ports: {clash}; give each task its own ports"
        )
    used = Resources.total(r for _, r in wanted)
    short = offered.shortfall(used)
    if short:
        what = "; ".join(f"{name}: {detail}" for name, detail in short.items())
        return AcceptVerdict(
            False,
            f"tasks ask for more than the offer holds ({what}); accept fewer or smaller tasks",
            used,
        )
    return AcceptVerdict(True, used=used)


def check_adopted_pods(
    tasks: list[TaskInfo], pods: Mapping[str, dict | None], scheduler_name: str
) -> AcceptVerdict:
    """Tasks adopting an existing pod: each pod must exist as named (same uid), be unbound, name
    this scheduler, and request no more than its task holds (else the agent would be over-committed
    behind the allocator's back). One failure refuses the whole accept, as any other shortfall."""
    problems: list[str] = []
    for t in tasks:
        if t.pod is None:
            continue
        pod = pods.get(t.pod.name)
        name = t.pod.name
        if pod is None:
            # The master holds only the pods naming its scheduler (and its own).
            problems.append(f"pod {name} not found among the pods with schedulerName {scheduler_name}")
            continue
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if meta.get("uid") != t.pod.uid:
            problems.append(f"pod {name} has uid {meta.get('uid')}, not {t.pod.uid} (it was replaced)")
        elif meta.get("deletionTimestamp"):
            problems.append(f"pod {name} is being deleted")
        elif spec.get("nodeName"):
            problems.append(f"pod {name} is already bound to {spec['nodeName']}")
        elif (spec.get("schedulerName") or "default-scheduler") != scheduler_name:
            problems.append(
                f"pod {name} has schedulerName {spec.get('schedulerName') or 'default-scheduler'}, "
                f"not {scheduler_name}"
            )
        elif over := _beyond(pod_requests(spec), t.resources.to_resources()):
            problems.append(f"pod {name} requests more than its task holds ({over})")
    if problems:
        return AcceptVerdict(False, "cannot adopt: " + "; ".join(problems))
    return AcceptVerdict(True)


def _beyond(requested: Resources, held: Resources) -> str:
    parts = [
        f"{n}: pod requests {getattr(requested, n):.10g}, task holds {getattr(held, n):.10g}"
        for n in SCALARS
        if getattr(requested, n) > getattr(held, n) + 1e-9
    ]
    if missing := subtract_ranges(requested.ports, held.ports):
        parts.append(f"ports: pod uses host ports {format_ranges(missing)} the task does not hold")
    return "; ".join(parts)


def task_info_of(task: dict) -> TaskInfo:
    """The TaskInfo a Task object stands for (what an inline accept would have carried)."""
    spec = task["spec"]
    info: dict = {"name": task["metadata"]["name"], "resources": spec.get("resources") or {}}
    for name in ("container", "labels", "runSeconds", "executor", "pod"):
        if spec.get(name) is not None:
            info[name] = spec[name]
    return TaskInfo.model_validate(info)


def check_named(
    offer: dict, framework_uid: str, tolerations: list | None, tasks: Mapping[str, dict | None]
) -> AcceptVerdict:
    """An accept by name (`taskNames`): every named Task must exist and have been made for this
    offer (its offer, framework, role and agent), be owned by the framework and carry the
    framework's tolerations. One that does not refuses the whole accept, naming it and the fix."""
    meta, spec = offer["metadata"], offer["spec"]
    role = spec.get("role") or DEFAULT_ROLE
    problems: list[str] = []
    for name, task in tasks.items():
        if task is None:
            problems.append(f"task {name} does not exist in namespace {meta['namespace']}: create it first")
            continue
        t = task["spec"]
        wrong = [
            f"spec.{field} is {got!r}, not {want!r}"
            for field, got, want in (
                ("offer", t.get("offer"), meta["name"]),
                ("framework", t.get("framework"), spec["framework"]),
                ("role", t.get("role") or DEFAULT_ROLE, role),
                ("agent", t.get("agent"), spec["agent"]),
            )
            if got != want
        ]
        owners = task["metadata"].get("ownerReferences") or []
        if not any(o.get("uid") == framework_uid and o.get("controller") for o in owners):
            wrong.append(
                f"it is not owned by framework {spec['framework']} (ownerReferences, uid {framework_uid})"
            )
        if (t.get("tolerations") or []) != (tolerations or []):
            wrong.append("spec.tolerations differ from the framework's")
        if wrong:
            problems.append(f"task {name}: " + "; ".join(wrong))
    if problems:
        return AcceptVerdict(False, "the named tasks do not match the offer: " + " | ".join(problems))
    return AcceptVerdict(True)
