"""The custom resources' schemas, written once as pydantic models.

`make crds` renders these into crds/*.yaml (mesoskube.api.crdgen); a test fails when the committed
YAML drifts. Field defaults live here and nowhere else. Rules that span fields are CEL
(`x-kubernetes-validations`) so the API server rejects bad objects before the master sees them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from mesoskube import TASK_IMAGE
from mesoskube.resources import Resources

# Mesos defaults (reference/mesos-semantics.md). The default refusal (5 s) is the master's
# defaultRefuseSeconds setting, not a schema default: a schema default would fill every object in
# and the setting would never apply.
DEFAULT_FAILOVER_TIMEOUT_SECONDS = 0.0
DEFAULT_ROLE = "*"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ROLE_NAME = r"^(\*|[a-zA-Z0-9_][a-zA-Z0-9_.\-]*)$"
PORT_RANGES = r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$"
# Kubernetes label values: what Task labels and agent attributes (node labels) become or come from.
LabelValue = Annotated[str, Field(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")]


def cel(rule: str, message: str, reason: str | None = None, field_path: str | None = None) -> dict[str, str]:
    out = {"rule": rule, "message": message}
    if reason:
        out["reason"] = reason
    if field_path:
        out["fieldPath"] = field_path
    return out


def frozen(*fields: str, optional: tuple[str, ...] = (), writer: str = "the master") -> list[dict[str, str]]:
    """Transition rules (oldSelf) keeping the named fields of an object as they were created: one
    rule per field, so the error names it. An optional field may be neither added nor removed."""
    rules = []
    for name in fields:
        rules.append(
            cel(
                f"self.{name} == oldSelf.{name}",
                f"spec.{name} is set by {writer} and immutable",
                "FieldValueForbidden",
                f".{name}",
            )
        )
    for name in optional:
        rules.append(
            cel(
                f"has(self.{name}) == has(oldSelf.{name}) "
                f"&& (!has(self.{name}) || self.{name} == oldSelf.{name})",
                f"spec.{name} is set by {writer} and immutable",
                "FieldValueForbidden",
                f".{name}",
            )
        )
    return rules


class Model(BaseModel):
    # camelCase on the wire is the Kubernetes convention; models use the same names so that a
    # field named in an error message is the one a person types in YAML.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResourceQuantities(Model):
    """Mesos resources. mem and disk in MB; gpus whole; ports as Mesos ranges '31000-31005,31010'."""

    # Bounds fit a whole cluster's sum too: framework and role status carry allocations in this form
    # (5,000 agents of 32 cores overflowed a 100,000 bound and the status write was refused).
    cpus: Annotated[float, Field(ge=0, le=10_000_000, description="CPU cores (3 decimals kept).")] = 0
    mem: Annotated[float, Field(ge=0, description="Memory in MB.")] = 0
    disk: Annotated[float, Field(ge=0, description="Ephemeral storage in MB.")] = 0
    gpus: Annotated[int, Field(ge=0, le=1_000_000, description="Whole GPUs (nvidia.com/gpu).")] = 0
    ports: Annotated[
        str | None,
        Field(
            pattern=PORT_RANGES, max_length=1024, description="Host port ranges, e.g. '31000-31002,31010'."
        ),
    ] = None

    def to_resources(self) -> Resources:
        return Resources.from_mapping(self.model_dump(exclude_none=True))


class QuotaLimits(Model):
    cpus: Annotated[float | None, Field(ge=0)] = None
    mem: Annotated[float | None, Field(ge=0, description="MB")] = None
    disk: Annotated[float | None, Field(ge=0, description="MB")] = None
    gpus: Annotated[int | None, Field(ge=0)] = None


class EnvVar(Model):
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")]
    value: Annotated[str, Field(max_length=16384)] = ""


class ContainerInfo(Model):
    """What the task's pod runs. On kwok fake nodes nothing runs; the image is recorded only."""

    image: Annotated[
        str,
        Field(
            min_length=1,
            max_length=512,
            description="Container image; the default is a busybox shell, imported into real nodes.",
        ),
    ] = TASK_IMAGE
    # Bounded so the API server's CEL cost estimate for the Task's immutability rules stays small.
    command: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=64)
    args: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=256)
    env: list[EnvVar] = Field(default_factory=list, max_length=128)


class PodRef(Model):
    """An existing, unbound pod a task adopts: the master binds it rather than creating one."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    uid: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            description="The pod's metadata.uid: the binding is refused if the pod was replaced.",
        ),
    ]


class Toleration(Model):
    """A Kubernetes toleration: agents with NoSchedule/NoExecute taints are offered only to frameworks
    that tolerate them, and their task pods carry these tolerations."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.operator != 'Exists' || !has(self.value)",
                    "a toleration with operator Exists has no value",
                ),
                cel(
                    "has(self.key) || self.operator == 'Exists'",
                    "a toleration without a key needs operator Exists",
                ),
                cel(
                    "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                    "tolerationSeconds is only allowed with effect NoExecute",
                ),
            ]
        }
    )

    key: Annotated[str | None, Field(max_length=317)] = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: Annotated[str | None, Field(max_length=63)] = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: Annotated[int | None, Field(ge=0)] = None


class TaskInfo(Model):
    """A task a framework launches from an accepted offer (Mesos TaskInfo)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.resources.cpus > 0.0 || self.resources.mem > 0.0",
                    "a task needs resources.cpus or resources.mem above 0",
                ),
                # The master keys a task's pod by the task's name (one namespace, one name).
                cel(
                    "!has(self.pod) || self.pod.name == self.name",
                    "a task adopting a pod takes the pod's name: set name to pod.name",
                ),
            ],
        }
    )

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=63,
            pattern=DNS_LABEL,
            description="Task id, unique within the framework; becomes the Task and Pod name.",
        ),
    ]
    resources: ResourceQuantities
    container: ContainerInfo = Field(default_factory=ContainerInfo)
    labels: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=64, description="Copied onto the Pod."
    )
    runSeconds: Annotated[
        float | None,
        Field(
            ge=0,
            le=86400 * 7,
            description="Emulation only: on kwok fake nodes the pod completes after this many seconds.",
        ),
    ] = None
    executor: Annotated[
        str | None,
        Field(max_length=63, pattern=DNS_LABEL, description="Executor id this task belongs to, if any."),
    ] = None
    pod: PodRef | None = Field(
        default=None,
        description="Adopt this existing pod (bind it to the offer's agent) instead of creating one; "
        "container, labels and runSeconds are then not used (the pod's own apply).",
    )


class Filters(Model):
    refuseSeconds: Annotated[
        float | None,
        Field(
            ge=0,
            le=31536000,
            description="Do not re-offer this agent to this framework for this long; unset = the "
            "framework's defaultFilters, else the master's defaultRefuseSeconds.",
        ),
    ] = None


class AnswerType(StrEnum):
    ACCEPT = "Accept"
    DECLINE = "Decline"


class OfferAnswer(Model):
    """The framework's one answer to an offer."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.type == 'Accept' || !has(self.tasks) || size(self.tasks) == 0",
                    "answer.tasks is only allowed with type Accept",
                ),
                cel(
                    "self.type == 'Accept' || !has(self.taskNames) || size(self.taskNames) == 0",
                    "answer.taskNames is only allowed with type Accept",
                ),
                cel(
                    "!has(self.taskNames) || size(self.taskNames) == 0 || !has(self.tasks) || "
                    "size(self.tasks) == 0",
                    "set answer.tasks (the master creates the Tasks) or answer.taskNames (Tasks the "
                    "framework created), not both",
                ),
            ]
        }
    )

    type: AnswerType
    tasks: list[TaskInfo] = Field(default_factory=list, max_length=256)
    taskNames: list[Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]] = Field(
        default_factory=list,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Accept: launch these Tasks, which the framework created in this namespace "
        "before answering, each with spec.offer set to this offer. The master checks them against "
        "the offer (all or none) and creates their pods.",
    )
    filters: Filters | None = Field(
        default=None, description="Filters for the leftover (accept) or the whole offer (decline)."
    )


# ---------------------------------------------------------------- Framework


class Capability(StrEnum):
    GPU_RESOURCES = "GPU_RESOURCES"
    PARTITION_AWARE = "PARTITION_AWARE"
    MULTI_ROLE = "MULTI_ROLE"
    TASK_KILLING_STATE = "TASK_KILLING_STATE"


class ReconcileRequest(Model):
    id: Annotated[int, Field(ge=0, description="Bump to ask again; the master answers once per id.")]
    taskIds: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=1000, description="Empty: implicit reconciliation (all tasks)."
    )


class FrameworkSpec(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(oldSelf.roles) || self.roles == oldSelf.roles || "
                    "(has(self.capabilities) && 'MULTI_ROLE' in self.capabilities)",
                    "roles can only change for frameworks with the MULTI_ROLE capability",
                ),
                *frozen(optional=("principal",), writer="the framework's creator"),
            ]
        }
    )

    roles: list[Annotated[str, Field(pattern=ROLE_NAME, max_length=128)]] = Field(
        default_factory=lambda: [DEFAULT_ROLE], min_length=1, max_length=16
    )
    failoverTimeoutSeconds: Annotated[
        float,
        Field(
            ge=0,
            le=31536000,
            description="After the heartbeat Lease lapses, tasks are killed once this much time passes.",
        ),
    ] = DEFAULT_FAILOVER_TIMEOUT_SECONDS
    capabilities: list[Capability] = Field(default_factory=list, max_length=8)
    defaultFilters: Filters | None = None
    suppress: bool = Field(default=False, description="SUPPRESS: no offers until set back to false.")
    revive: Annotated[
        int, Field(ge=0, description="REVIVE: bump to clear this framework's filters at once.")
    ] = 0
    reconcile: ReconcileRequest | None = None
    user: Annotated[str | None, Field(max_length=128)] = None
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints of agents this framework may be offered."
    )
    principal: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=512,
            description=(
                "Mesos principal: the Kubernetes user that created the framework (checked at "
                "admission: it must be the creating user). Only it, or the master, may answer the "
                "framework's offers, kill its tasks and delete it."
            ),
        ),
    ] = None


class FrameworkPhase(StrEnum):
    SUBSCRIBED = "Subscribed"
    DISCONNECTED = "Disconnected"
    TORN_DOWN = "TornDown"


class ReconciledTask(Model):
    taskId: str
    state: str
    reason: str | None = None


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    lastTransitionTime: str | None = None


class FrameworkStatus(Model):
    model_config = ConfigDict(extra="allow")

    frameworkId: str | None = None
    phase: FrameworkPhase | None = None
    subscribedAt: str | None = None
    disconnectedAt: str | None = None
    offers: int = 0
    tasks: int = 0
    allocated: ResourceQuantities | None = None
    dominantShare: float | None = None
    observedRevive: int = 0
    reconciled: list[ReconciledTask] | None = None
    observedReconcile: int | None = None
    conditions: list[Condition] = Field(default_factory=list)


# ---------------------------------------------------------------- Offer


class OfferPhase(StrEnum):
    OUTSTANDING = "Outstanding"
    ACCEPTED = "Accepted"
    DECLINED = "Declined"
    RESCINDED = "Rescinded"
    EXPIRED = "Expired"
    INVALID = "Invalid"


class OfferSpec(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(oldSelf.answer) || (has(self.answer) && self.answer == oldSelf.answer)",
                    "an offer is answered once: spec.answer cannot change after it is set",
                ),
                # Everything but the answer is the master's: a framework that rewrote spec.role
                # before accepting escaped its role's quota and share.
                *frozen("framework", "role", "agent", "resources", optional=("attributes", "expiresAt")),
            ]
        }
    )

    framework: Annotated[str, Field(min_length=1, max_length=253)]
    role: Annotated[str, Field(pattern=ROLE_NAME, max_length=128)] = DEFAULT_ROLE
    agent: Annotated[str, Field(min_length=1, max_length=253, description="Node name.")]
    resources: ResourceQuantities
    attributes: dict[str, str] = Field(
        default_factory=dict, max_length=256, description="Agent attributes (node labels)."
    )
    expiresAt: str | None = Field(default=None, description="RFC 3339; unset = never (no offerTimeout).")
    answer: OfferAnswer | None = None


class OfferStatus(Model):
    model_config = ConfigDict(extra="allow")

    phase: OfferPhase | None = None
    reason: str | None = None
    message: str | None = None
    launched: list[str] | None = None


# ---------------------------------------------------------------- Task


class TaskState(StrEnum):
    STAGING = "TASK_STAGING"
    STARTING = "TASK_STARTING"
    RUNNING = "TASK_RUNNING"
    KILLING = "TASK_KILLING"
    FINISHED = "TASK_FINISHED"
    FAILED = "TASK_FAILED"
    KILLED = "TASK_KILLED"
    ERROR = "TASK_ERROR"
    LOST = "TASK_LOST"
    UNREACHABLE = "TASK_UNREACHABLE"  # partition-aware frameworks only; not terminal
    DROPPED = "TASK_DROPPED"
    GONE = "TASK_GONE"


TERMINAL_TASK_STATES = frozenset(
    {
        TaskState.FINISHED,
        TaskState.FAILED,
        TaskState.KILLED,
        TaskState.ERROR,
        TaskState.LOST,
        TaskState.DROPPED,
        TaskState.GONE,
    }
)


class TaskSpec(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                # A launched task is the master's record of an accept; only `kill` is the framework's.
                *frozen(
                    "framework",
                    "role",
                    "agent",
                    "resources",
                    "container",
                    optional=("offer", "labels", "runSeconds", "executor", "tolerations", "pod"),
                ),
                cel("!oldSelf.kill || self.kill", "spec.kill cannot be unset once set"),
            ]
        }
    )

    framework: Annotated[str, Field(min_length=1, max_length=253)]
    role: Annotated[str, Field(pattern=ROLE_NAME, max_length=128)] = DEFAULT_ROLE
    agent: Annotated[str, Field(min_length=1, max_length=253)]
    offer: Annotated[str | None, Field(max_length=253)] = None
    resources: ResourceQuantities
    container: ContainerInfo = Field(default_factory=ContainerInfo)
    labels: dict[str, LabelValue] = Field(default_factory=dict, max_length=64)
    runSeconds: Annotated[float | None, Field(ge=0)] = None
    executor: Annotated[str | None, Field(max_length=63)] = None
    pod: PodRef | None = Field(default=None, description="The adopted pod, if the task did not create one.")
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    kill: bool = Field(default=False, description="KILL: set true to kill the task.")


class TaskStatus(Model):
    model_config = ConfigDict(extra="allow")

    state: TaskState | None = None
    reason: str | None = None
    message: str | None = None
    podName: str | None = None
    launchedAt: str | None = None
    runningAt: str | None = None
    finishedAt: str | None = None


# ---------------------------------------------------------------- MesosRole (weights and quota)


class MesosRoleSpec(Model):
    weight: Annotated[float, Field(gt=0, le=1000000, description="DRF weight: shares are divided by it.")] = (
        1.0
    )
    quota: QuotaLimits | None = Field(default=None, description="Limits on what the role may hold.")
    # Mesos role ACLs (register_frameworks): who may subscribe with this role. Checked at admission
    # by the chart's ValidatingAdmissionPolicy mesoskube-role-access. Unset = anyone.
    allowedNamespaces: list[Annotated[str, Field(max_length=63, pattern=DNS_LABEL)]] | None = Field(
        default=None,
        max_length=256,
        description="Namespaces whose Frameworks may use this role; unset = any.",
    )
    allowedPrincipals: list[Annotated[str, Field(max_length=512)]] | None = Field(
        default=None,
        max_length=256,
        description="Users (system:serviceaccount:NS:NAME) whose Frameworks may use this role; unset = any.",
    )


class MesosRoleStatus(Model):
    model_config = ConfigDict(extra="allow")

    allocated: ResourceQuantities | None = None
    dominantShare: float | None = None
    frameworks: int = 0


# ---------------------------------------------------------------- CRD descriptions


class PrinterColumn(BaseModel):
    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    jsonPath: str
    priority: int = 0
    description: str = ""


class CustomResource(BaseModel):
    """What crdgen needs to render one CRD."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    scope: Literal["Namespaced", "Cluster"]
    spec: type[Model]
    status: type[Model]
    columns: list[PrinterColumn]
    # Fields `kubectl get --field-selector` (and the master's bulk deletes) can select on.
    selectable: list[str] = []
    spec_required: bool = True
    # CEL rules on the whole object (they may read metadata.name).
    validations: list[dict[str, str]] = []
    categories: ClassVar[list[str]] = ["mesos", "mesoskube"]


def _col(name: str, type_: str, path: str, priority: int = 0, description: str = "") -> PrinterColumn:
    return PrinterColumn(name=name, type=type_, jsonPath=path, priority=priority, description=description)


AGE = _col("Age", "date", ".metadata.creationTimestamp")

RESOURCES: list[CustomResource] = [
    CustomResource(
        kind="Framework",
        plural="frameworks",
        singular="framework",
        short_names=["fw"],
        scope="Namespaced",
        spec=FrameworkSpec,
        status=FrameworkStatus,
        spec_required=False,
        validations=[
            cel(
                "size(self.metadata.name) <= 63",
                "metadata.name: a Framework's name is a label value on its Offers, Tasks and Pods, "
                "so at most 63 characters",
                "FieldValueInvalid",
            )
        ],
        columns=[
            _col("Roles", "string", ".spec.roles"),
            _col("State", "string", ".status.phase"),
            _col("Offers", "integer", ".status.offers"),
            _col("Tasks", "integer", ".status.tasks"),
            _col("CPUs", "number", ".status.allocated.cpus"),
            _col("Mem", "number", ".status.allocated.mem"),
            _col(
                "Share",
                "number",
                ".status.dominantShare",
                description="Dominant share of the cluster, unweighted (frameworks in a role weigh the same; "
                "the role's weight is in the MesosRole's Share).",
            ),
            AGE,
        ],
    ),
    CustomResource(
        kind="Offer",
        plural="offers",
        singular="offer",
        short_names=["of"],
        scope="Namespaced",
        spec=OfferSpec,
        status=OfferStatus,
        columns=[
            _col("Framework", "string", ".spec.framework"),
            _col("Agent", "string", ".spec.agent"),
            _col("CPUs", "number", ".spec.resources.cpus"),
            _col("Mem", "number", ".spec.resources.mem"),
            _col("GPUs", "integer", ".spec.resources.gpus"),
            _col("Ports", "string", ".spec.resources.ports"),
            _col("Phase", "string", ".status.phase"),
            _col("Answer", "string", ".spec.answer.type", description="Accept or Decline, once answered."),
            AGE,
            _col("Expires", "string", ".spec.expiresAt"),
        ],
        selectable=[".spec.framework", ".spec.agent", ".spec.answer.type", ".status.phase"],
    ),
    CustomResource(
        kind="Task",
        plural="tasks",
        singular="task",
        short_names=["tk", "mtask"],
        scope="Namespaced",
        spec=TaskSpec,
        status=TaskStatus,
        columns=[
            _col("Framework", "string", ".spec.framework"),
            _col("Agent", "string", ".spec.agent"),
            _col("State", "string", ".status.state"),
            _col("CPUs", "number", ".spec.resources.cpus"),
            _col("Mem", "number", ".spec.resources.mem"),
            _col("Reason", "string", ".status.reason", priority=1),
            AGE,
        ],
        selectable=[".spec.framework", ".spec.agent", ".status.state"],
    ),
    CustomResource(
        kind="MesosRole",
        plural="mesosroles",
        singular="mesosrole",
        short_names=["mrole"],
        scope="Cluster",
        spec=MesosRoleSpec,
        status=MesosRoleStatus,
        spec_required=False,
        columns=[
            _col("Weight", "number", ".spec.weight"),
            _col("Quota-CPUs", "number", ".spec.quota.cpus"),
            _col("Quota-Mem", "number", ".spec.quota.mem"),
            _col("Frameworks", "integer", ".status.frameworks"),
            _col(
                "Share",
                "number",
                ".status.dominantShare",
                description="Weighted dominant share: dominant share / weight, what DRF orders roles by.",
            ),
            AGE,
        ],
    ),
]


def parse_spec(model: type[Model], body: dict[str, Any]) -> Any:
    """Validate an object's spec as the master reads it (the API server has already checked it)."""
    return model.model_validate(body.get("spec") or {})
