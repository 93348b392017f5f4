"""`mesoskube spark status|kill SUBMISSION`: follow and stop a cluster-mode Spark driver.

A submission id is Spark's own (K8SSparkSubmitOperation, what `spark-submit --status|--kill` take):
`namespace:driver-pod`, or `driver-pod` in --namespace; a trailing `*` matches every driver pod
(label spark-role=driver) whose name starts with the rest. What Spark prints is the pod's phase;
here the driver is also a Task of its application's Framework (the pods framework placed it
through an offer), so the status names the Mesos state, the agent and the executors' Tasks.
A kill deletes the driver pod, as Spark's does; its executor pods are owned by it (Spark sets the
owner reference) and go with it, and the Framework is torn down after its last pod.

The parsing and the report are pure (dicts in, text out); `find`, `status` and `kill` are the
adapters onto the API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mesoskube.frameworks.pods.groups import SPARK_APP_LABEL, framework_name

FRAMEWORK_LABEL = "mesoskube.io/framework"
_NAME = re.compile(r"^[a-z0-9][-a-z0-9.]*\*?$|^\*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class SubmissionIdError(ValueError):
    pass


@dataclass(frozen=True)
class SubmissionId:
    namespace: str
    name: str  # without the trailing '*'
    glob: bool

    def __str__(self) -> str:
        return f"{self.namespace}:{self.name}{'*' if self.glob else ''}"


def parse_submission_id(text: str, default_namespace: str) -> SubmissionId:
    namespace, sep, name = text.strip().partition(":")
    if not sep:
        namespace, name = default_namespace, namespace
    if not _NAME.match(name) or not _NAMESPACE.match(namespace):
        raise SubmissionIdError(
            f"submission id {text!r}: expected NAMESPACE:DRIVER-POD or DRIVER-POD (a pod name, "
            "optionally ending in '*'), as `mesoskube spark submit --deploy-mode cluster` printed"
        )
    glob = name.endswith("*")
    return SubmissionId(namespace, name.removesuffix("*"), glob)


@dataclass(frozen=True)
class DriverReport:
    """One driver: its pod, its Task (None before the pods framework launched it), its executors'
    Tasks and its Framework (None before the first pod was seen or after teardown)."""

    namespace: str
    pod: str
    phase: str
    node: str | None
    app_id: str | None
    task_state: str | None
    task_agent: str | None
    framework: str | None
    role: str | None
    executors: dict[str, str]  # executor pod -> Task state
    executor_agents: dict[str, str]  # executor pod -> agent
    exit_code: int | None
    message: str | None

    @property
    def state(self) -> str:
        """The Mesos state of the driver: its Task's, else TASK_STAGING while the pod waits."""
        if self.task_state:
            return self.task_state
        return {"Succeeded": "TASK_FINISHED", "Failed": "TASK_FAILED"}.get(self.phase, "TASK_STAGING")

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def to_dict(self) -> dict[str, Any]:
        return {**vars(self), "state": self.state, "submission": f"{self.namespace}:{self.pod}"}

    def lines(self) -> list[str]:
        where = self.node or "not bound yet"
        out = [
            f"submission {self.namespace}:{self.pod}",
            f"  driver      {self.state} (pod {self.phase} on {where})"
            + (f", exit code {self.exit_code}" if self.exit_code is not None else ""),
        ]
        if self.message:
            out.append(f"  message     {self.message}")
        if self.framework:
            out.append(f"  framework   {self.framework} (role {self.role or '*'}), app {self.app_id}")
        elif self.app_id:
            out.append(f"  framework   none (app {self.app_id}: not placed yet, or torn down)")
        states: dict[str, int] = {}
        for s in self.executors.values():
            states[s] = states.get(s, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
        agents = sorted(set(self.executor_agents.values()))
        out.append(f"  executors   {summary}" + (f" on {', '.join(agents)}" if agents else ""))
        return out


def report(pod: dict, tasks: list[dict], framework: dict | None) -> DriverReport:
    """From the driver pod and the Tasks of its application's Framework (API dicts, camelCase)."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    name = meta["name"]
    app_id = (meta.get("labels") or {}).get(SPARK_APP_LABEL)
    by_name = {t["metadata"]["name"]: t for t in tasks}
    own = by_name.get(name)
    executors, agents = {}, {}
    for tname, t in sorted(by_name.items()):
        if tname == name:
            continue
        executors[tname] = (t.get("status") or {}).get("state") or "TASK_STAGING"
        if agent := (t.get("spec") or {}).get("agent"):
            agents[tname] = agent
    exit_code = message = None
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            exit_code = term.get("exitCode")
            message = term.get("message") or (term.get("reason") if exit_code else None)
    if message is None and own is not None:
        message = (own.get("status") or {}).get("message") or None
    if message is None and status.get("phase", "Pending") == "Pending" and not spec.get("nodeName"):
        message = "waiting for an offer that fits the driver pod (kubectl describe framework shows why)"
    return DriverReport(
        namespace=meta["namespace"],
        pod=name,
        phase=status.get("phase", "Pending"),
        node=spec.get("nodeName"),
        app_id=app_id,
        task_state=((own or {}).get("status") or {}).get("state"),
        task_agent=((own or {}).get("spec") or {}).get("agent"),
        framework=framework["metadata"]["name"] if framework else None,
        role=((framework or {}).get("spec") or {}).get("roles", ["*"])[0] if framework else None,
        executors=executors,
        executor_agents=agents,
        exit_code=exit_code,
        message=message,
    )


def matching(pods: list[dict], sid: SubmissionId) -> list[dict]:
    """The driver pods a submission id names (a glob: Spark's rule, name prefix + spark-role=driver)."""
    if not sid.glob:
        return [p for p in pods if p["metadata"]["name"] == sid.name]
    return sorted(
        (
            p
            for p in pods
            if p["metadata"]["name"].startswith(sid.name)
            and (p["metadata"].get("labels") or {}).get("spark-role") == "driver"
        ),
        key=lambda p: p["metadata"]["name"],
    )


# ------------------------------------------------------------------------------ adapters


def find(kube, sid: SubmissionId) -> list[dict]:
    """The driver pods named, as API dicts."""
    from kubernetes.client.exceptions import ApiException

    if sid.glob:
        items = kube.core.list_namespaced_pod(sid.namespace, label_selector="spark-role=driver").items
    else:
        try:
            items = [kube.core.read_namespaced_pod(sid.name, sid.namespace)]
        except ApiException as e:
            if e.status == 404:
                return []
            raise
    return matching([kube.api.sanitize_for_serialization(p) for p in items], sid)


def status(kube, sid: SubmissionId) -> list[DriverReport]:
    from kubernetes.client.exceptions import ApiException

    out = []
    for pod in find(kube, sid):
        app_id = (pod["metadata"].get("labels") or {}).get(SPARK_APP_LABEL)
        tasks: list[dict] = []
        fw = None
        if app_id:
            fw_name = framework_name(app_id)
            tasks = kube.list("tasks", sid.namespace, label_selector=f"{FRAMEWORK_LABEL}={fw_name}")
            try:
                fw = kube.get("frameworks", sid.namespace, fw_name)
            except ApiException as e:
                if e.status != 404:
                    raise
        out.append(report(pod, tasks, fw))
    return out


def kill(kube, sid: SubmissionId, grace_period: int | None = None) -> list[str]:
    """Delete the named driver pods (Spark's kill); returns their names. Executors go with them."""
    from kubernetes.client.exceptions import ApiException

    killed = []
    for pod in find(kube, sid):
        name = pod["metadata"]["name"]
        try:
            kube.core.delete_namespaced_pod(name, sid.namespace, grace_period_seconds=grace_period)
        except ApiException as e:
            if e.status != 404:
                raise
            continue
        killed.append(name)
    return killed
