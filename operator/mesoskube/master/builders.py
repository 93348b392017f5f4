"""Pure builders of the objects the master writes: Offers, Tasks and Pods."""

from __future__ import annotations

import copy

from mesoskube import API_GROUP, API_VERSION, TASK_IMAGE
from mesoskube.api.models import TaskInfo
from mesoskube.master import (
    ANNOTATION_RUN_DURATION,
    LABEL_AGENT,
    LABEL_FRAMEWORK,
    LABEL_TASK,
)
from mesoskube.resources import Resources

API = f"{API_GROUP}/{API_VERSION}"
SCHEDULER_NAME = "mesoskube"
# Fake nodes carry this taint; real agents may carry their own, tolerated through node config.
TOLERATIONS = [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
MAX_HOST_PORTS = 64
# Pod Security `restricted`, so task pods run in namespaces that enforce it: non-root (a fixed uid, so
# an image without a USER still starts), no privilege escalation or capabilities, the runtime's
# default seccomp profile. Host ports are the one thing a task may ask for that no level but
# `privileged` allows.
TASK_UID = 65532
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": TASK_UID,
    "runAsGroup": TASK_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def owner_ref(kind: str, name: str, uid: str, controller: bool = True) -> dict:
    return {
        "apiVersion": API,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def offer_manifest(
    framework: str,
    framework_uid: str,
    role: str,
    agent: str,
    resources: Resources,
    attributes: dict[str, str],
    expires_at: str | None,
) -> dict:
    spec: dict = {
        "framework": framework,
        "role": role,
        "agent": agent,
        "resources": resources.to_mapping(),
        "attributes": attributes,
    }
    if expires_at:
        spec["expiresAt"] = expires_at
    return {
        "apiVersion": API,
        "kind": "Offer",
        "metadata": {
            "generateName": f"{framework[:40]}-",
            "labels": {LABEL_FRAMEWORK: framework, LABEL_AGENT: agent[:63]},
            "ownerReferences": [owner_ref("Framework", framework, framework_uid)],
        },
        "spec": spec,
    }


def task_manifest(
    task: TaskInfo,
    framework: str,
    framework_uid: str,
    role: str,
    agent: str,
    offer: str,
    tolerations: list[dict] | None = None,
) -> dict:
    spec = {
        "framework": framework,
        "role": role,
        "agent": agent,
        "offer": offer,
        "resources": task.resources.model_dump(exclude_none=True, exclude_defaults=True),
        "container": task.container.model_dump(exclude_defaults=True),
        "labels": task.labels,
    }
    if task.runSeconds is not None:
        spec["runSeconds"] = task.runSeconds
    if task.executor:
        spec["executor"] = task.executor
    if task.pod is not None:
        spec["pod"] = task.pod.model_dump()
    if tolerations:
        spec["tolerations"] = tolerations
    return {
        "apiVersion": API,
        "kind": "Task",
        "metadata": {
            "name": task.name,
            "labels": {LABEL_FRAMEWORK: framework, LABEL_AGENT: agent[:63]},
            "ownerReferences": [owner_ref("Framework", framework, framework_uid)],
        },
        "spec": spec,
    }


def _quantity_requests(r: Resources) -> dict[str, str]:
    req: dict[str, str] = {}
    if r.cpus:
        req["cpu"] = f"{round(r.cpus * 1000)}m"
    if r.mem:
        req["memory"] = f"{round(r.mem)}Mi"
    if r.disk:
        req["ephemeral-storage"] = f"{round(r.disk)}Mi"
    if r.gpus:
        req["nvidia.com/gpu"] = str(int(r.gpus))
    return req


def binding_manifest(name: str, uid: str, agent: str) -> dict:
    """The Binding that puts an adopted pod on its agent (what kube-scheduler writes); the uid makes
    the API server refuse it if the pod was replaced by another of the same name."""
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "uid": uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": agent},
    }


def pod_manifest(task: dict) -> dict:
    """The Pod that materialises a Task on its agent: bound with nodeName, requests = the task's resources."""
    meta, spec = task["metadata"], task["spec"]
    resources = Resources.from_mapping(spec.get("resources"))
    container = spec.get("container") or {}
    requests = _quantity_requests(resources)
    ports = [
        {"containerPort": p, "hostPort": p, "protocol": "TCP", "name": f"p{i}"}
        for i, p in enumerate(port for lo, hi in resources.ports for port in range(lo, hi + 1))
        if i < MAX_HOST_PORTS
    ]
    annotations = {}
    if spec.get("runSeconds") is not None:
        annotations[ANNOTATION_RUN_DURATION] = f"{float(spec['runSeconds']):.3f}s"
    main = {
        "name": "task",
        "image": container.get("image") or TASK_IMAGE,
        # Images are imported into real nodes, not pulled: a missing one fails fast as ErrImageNeverPull
        # would not, so IfNotPresent keeps a registry usable where there is one.
        "imagePullPolicy": "IfNotPresent",
        # Limits equal requests: the kernel enforces what was offered (cpu shares, memory OOM kill).
        "resources": {"requests": requests, "limits": requests},
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
    }
    for key in ("command", "args", "env"):
        if container.get(key):
            main[key] = container[key]
    if not container.get("command") and not container.get("args") and spec.get("runSeconds") is not None:
        # An emulated task (runSeconds, no command) really sleeps that long on a real node; on a
        # kwok node the pod stages honour the annotation instead.
        main["command"] = ["sleep", f"{float(spec['runSeconds']):g}"]
    if ports:
        main["ports"] = ports
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {
                **(spec.get("labels") or {}),
                LABEL_FRAMEWORK: spec["framework"],
                LABEL_TASK: meta["name"],
            },
            "annotations": annotations,
            "ownerReferences": [owner_ref("Task", meta["name"], meta["uid"])],
        },
        "spec": {
            "nodeName": spec["agent"],
            "schedulerName": SCHEDULER_NAME,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 5,
            "securityContext": copy.deepcopy(POD_SECURITY),
            "tolerations": TOLERATIONS + list(spec.get("tolerations") or []),
            "containers": [main],
        },
    }
