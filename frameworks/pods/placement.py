"""Whether a pod fits an offer (pure): the node constraints kube-scheduler's filters check, against
the agent's labels and taints, and the pod's requests against what the offer still holds.

Checked: `nodeSelector`, required node affinity (`requiredDuringSchedulingIgnoredDuringExecution`:
terms ORed, expressions ANDed, operators In, NotIn, Exists, DoesNotExist, Gt, Lt, and matchFields
on metadata.name), tolerations of NoSchedule and NoExecute taints, and requests (cpu, memory,
ephemeral-storage, nvidia.com/gpu, host ports). Not checked: preferred affinity, pod (anti-)affinity,
topology spread, volumes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from mesoskube.master.cache import pod_requests, quantities_to_resources
from mesoskube.resources import SCALARS, Resources, subtract_ranges

# Mesos refuses tasks without resources; a pod requesting nothing (BestEffort) becomes a task of this.
MIN_TASK_CPUS = 0.01

AFFINITY = "node(s) didn't match Pod's node affinity/selector"
PORTS = "node(s) didn't have free ports for the requested pod ports"
UNKNOWN_AGENT = "agent not known yet"
_INSUFFICIENT = {
    "cpus": "Insufficient cpu",
    "mem": "Insufficient memory",
    "disk": "Insufficient ephemeral-storage",
    "gpus": "Insufficient nvidia.com/gpu",
}
# Reasons that hold however much the agent frees: an offer declined for them is refused longer.
CONSTRAINT_PREFIXES = (AFFINITY, "node(s) had untolerated taint")


@dataclass(frozen=True, slots=True)
class AgentView:
    """What the framework knows of an agent beyond its offers: taints and capacity (from the Node)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Mapping[str, str], ...] = ()
    allocatable: Resources = field(default_factory=Resources)

    @classmethod
    def from_node(cls, node: dict) -> AgentView:
        return cls(
            name=node["metadata"]["name"],
            labels=dict(node["metadata"].get("labels") or {}),
            taints=tuple((node.get("spec") or {}).get("taints") or ()),
            allocatable=quantities_to_resources((node.get("status") or {}).get("allocatable")),
        )


def pod_resources(pod: dict) -> Resources:
    """The task's resources: the pod's requests (at least MIN_TASK_CPUS when it requests nothing)."""
    r = pod_requests(pod.get("spec") or {})
    if not r.cpus and not r.mem:
        r = Resources(MIN_TASK_CPUS, r.mem, r.disk, r.gpus, r.ports)
    return r


def constraint_problem(pod: dict, agent: AgentView) -> str | None:
    """Why the pod may never run on this agent (selector, affinity, taints), or None."""
    spec = pod.get("spec") or {}
    labels = agent.labels
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return AFFINITY
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required is not None:
        terms = required.get("nodeSelectorTerms") or []
        # An empty term list matches no node (as in Kubernetes); an empty term matches none either.
        if not any(_term_matches(t, agent) for t in terms):
            return AFFINITY
    for taint in agent.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(
            taint, spec.get("tolerations") or []
        ):
            shown = f"{taint.get('key')}: {taint['value']}" if taint.get("value") else taint.get("key")
            return f"node(s) had untolerated taint {{{shown}}}"
    return None


def resource_problem(wanted: Resources, left: Resources) -> str | None:
    for n in SCALARS:
        if getattr(wanted, n) > getattr(left, n) + 1e-9:
            return _INSUFFICIENT[n]
    if subtract_ranges(wanted.ports, left.ports):
        return PORTS
    return None


def fit_problem(pod: dict, agent: AgentView | None, left: Resources) -> str | None:
    """Why the pod does not fit what is `left` of an offer on `agent`, or None when it fits."""
    if agent is None:
        return UNKNOWN_AGENT
    return constraint_problem(pod, agent) or resource_problem(pod_resources(pod), left)


def is_constraint(reason: str) -> bool:
    return reason.startswith(CONSTRAINT_PREFIXES)


def summary(reasons: Counter[str], total: int, what: str) -> str:
    """kube-scheduler's form: '0/3 agents fit: 2 Insufficient cpu, 1 node(s) had untolerated taint {a}.'"""
    parts = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"0/{total} {what} fit: {parts}." if parts else f"0/{total} {what} fit."


def _term_matches(term: Mapping, agent: AgentView) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    field_values = {"metadata.name": agent.name}
    return all(_expr_matches(e, agent.labels) for e in exprs) and all(
        _expr_matches(f, field_values) for f in fields
    )


def _expr_matches(expr: Mapping, labels: Mapping[str, str]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), list(expr.get("values") or [])
    present = key in labels
    value = labels.get(key)
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, bound = int(value), int(values[0])
        except (TypeError, ValueError):
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def _tolerated(taint: Mapping, tolerations: list[Mapping]) -> bool:
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        op = t.get("operator") or "Equal"
        if op == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False
