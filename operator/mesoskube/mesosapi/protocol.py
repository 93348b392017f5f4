"""Pure parts of the scheduler API: call validation, RecordIO, event and TaskInfo translation.

Shapes follow include/mesos/v1/scheduler/scheduler.proto and mesos.proto (JSON: snake_case field
names, enums by name, bytes base64). Error messages are the Mesos master's (src/master/http.cpp,
src/master/validation.cpp) so clients and people searching for them find the same words.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from mesoskube.api.models import DNS_LABEL, ROLE_NAME, Capability
from mesoskube.master import LABEL_TASK_ID
from mesoskube.resources import Resources

APPLICATION_JSON = "application/json"
APPLICATION_PROTOBUF = "application/x-protobuf"
HEARTBEAT_INTERVAL_SECONDS = 15.0
MESOS_VERSION = "1.11.0"  # dotted integers: a CLI parses it as such
LABEL_MESOS_TASK_ID = LABEL_TASK_ID
# Emulation only: a Mesos task label giving the seconds a pod on a kwok fake node "runs".
LABEL_RUN_DURATION = "mesoskube.io/run-duration"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

# TaskStatus.Reason values of mesos.proto. The master also writes reasons of its own
# (REASON_POD_PENDING, ...); a Mesos client may parse the enum strictly, so those go into the message.
MESOS_REASONS = frozenset(
    {
        "REASON_COMMAND_EXECUTOR_FAILED",
        "REASON_CONTAINER_LAUNCH_FAILED",
        "REASON_CONTAINER_LIMITATION",
        "REASON_CONTAINER_LIMITATION_DISK",
        "REASON_CONTAINER_LIMITATION_MEMORY",
        "REASON_CONTAINER_PREEMPTED",
        "REASON_CONTAINER_UPDATE_FAILED",
        "REASON_MAX_COMPLETION_TIME_REACHED",
        "REASON_EXECUTOR_REGISTRATION_TIMEOUT",
        "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
        "REASON_EXECUTOR_TERMINATED",
        "REASON_EXECUTOR_UNREGISTERED",
        "REASON_FRAMEWORK_REMOVED",
        "REASON_GC_ERROR",
        "REASON_INVALID_FRAMEWORKID",
        "REASON_INVALID_OFFERS",
        "REASON_IO_SWITCHBOARD_EXITED",
        "REASON_MASTER_DISCONNECTED",
        "REASON_RECONCILIATION",
        "REASON_RESOURCES_UNKNOWN",
        "REASON_AGENT_DISCONNECTED",
        "REASON_AGENT_DRAINING",
        "REASON_AGENT_REMOVED",
        "REASON_AGENT_REMOVED_BY_OPERATOR",
        "REASON_AGENT_REREGISTERED",
        "REASON_AGENT_RESTARTED",
        "REASON_AGENT_UNKNOWN",
        "REASON_TASK_KILLED_DURING_LAUNCH",
        "REASON_TASK_CHECK_STATUS_UPDATED",
        "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
        "REASON_TASK_GROUP_INVALID",
        "REASON_TASK_GROUP_UNAUTHORIZED",
        "REASON_TASK_INVALID",
        "REASON_TASK_UNAUTHORIZED",
        "REASON_TASK_UNKNOWN",
    }
)
CALL_TYPES = frozenset(
    {
        "SUBSCRIBE",
        "TEARDOWN",
        "ACCEPT",
        "DECLINE",
        "ACCEPT_INVERSE_OFFERS",
        "DECLINE_INVERSE_OFFERS",
        "REVIVE",
        "SUPPRESS",
        "KILL",
        "SHUTDOWN",
        "ACKNOWLEDGE",
        "ACKNOWLEDGE_OPERATION_STATUS",
        "RECONCILE",
        "RECONCILE_OPERATIONS",
        "MESSAGE",
        "REQUEST",
        "UPDATE_FRAMEWORK",
    }
)
# The call field each type must carry (validation.cpp: "Expecting '<field>' to be present").
CALL_FIELDS = {
    "SUBSCRIBE": "subscribe",
    "ACCEPT": "accept",
    "DECLINE": "decline",
    "ACCEPT_INVERSE_OFFERS": "accept_inverse_offers",
    "DECLINE_INVERSE_OFFERS": "decline_inverse_offers",
    "KILL": "kill",
    "SHUTDOWN": "shutdown",
    "ACKNOWLEDGE": "acknowledge",
    "ACKNOWLEDGE_OPERATION_STATUS": "acknowledge_operation_status",
    "RECONCILE": "reconcile",
    "RECONCILE_OPERATIONS": "reconcile_operations",
    "MESSAGE": "message",
    "REQUEST": "request",
    "UPDATE_FRAMEWORK": "update_framework",
}


@dataclass
class CallError(Exception):
    """A call refused before it reaches a framework: HTTP status and Mesos's message."""

    status: int
    message: str


def parse_call(content_type: str | None, body: bytes) -> dict[str, Any]:
    """Content-Type, JSON and validation checks, in the order the Mesos master makes them."""
    if not content_type:
        raise CallError(400, "Expecting 'Content-Type' to be present")
    media = content_type.split(";")[0].strip().lower()
    if media == APPLICATION_PROTOBUF:
        from mesoskube.mesosapi.proto import decode_call

        try:
            call = decode_call(body or b"")
        except ValueError:
            raise CallError(400, "Failed to parse body into Call protobuf") from None
    elif media != APPLICATION_JSON:
        raise CallError(415, f"Expecting 'Content-Type' of {APPLICATION_JSON} or {APPLICATION_PROTOBUF}")
    else:
        try:
            call = json.loads(body or b"")
        except ValueError as e:
            raise CallError(400, f"Failed to parse body into JSON: {e}") from None
    if not isinstance(call, dict):
        raise CallError(400, "Failed to convert JSON into Call protobuf: Expecting a JSON object")
    error = validate_call(call)
    if error:
        raise CallError(400, f"Failed to validate scheduler::Call: {error}")
    return call


def validate_call(call: dict[str, Any]) -> str | None:
    kind = call.get("type")
    if not kind:
        return "Expecting 'type' to be present"
    if kind not in CALL_TYPES:
        return f"Unknown call type '{kind}'"
    field = CALL_FIELDS.get(kind)
    if kind == "SUBSCRIBE":
        if not isinstance(call.get(field), dict):
            return f"Expecting '{field}' to be present"
        info = call["subscribe"].get("framework_info")
        if not isinstance(info, dict):
            return "Not initialized: subscribe.framework_info"
        for required in ("user", "name"):
            if not isinstance(info.get(required), str):
                return f"Not initialized: subscribe.framework_info.{required}"
        if value_of(info.get("id")) != value_of(call.get("framework_id")):
            return "'framework_id' differs from 'subscribe.framework_info.id'"
        return None  # FrameworkInfo itself is checked on the stream (an ERROR event), as in Mesos
    if not value_of(call.get("framework_id")):
        return "Expecting 'framework_id' to be present"
    if field and not isinstance(call.get(field), dict):
        return f"Expecting '{field}' to be present"
    if kind == "ACKNOWLEDGE":
        try:
            raw = base64.b64decode(call["acknowledge"].get("uuid") or "", validate=True)
            uuid.UUID(bytes=raw)
        except ValueError:
            return "Invalid UUID: acknowledge.uuid must be base64 of 16 bytes"
    if kind == "UPDATE_FRAMEWORK":
        info = call["update_framework"].get("framework_info") or {}
        if value_of(info.get("id")) != value_of(call.get("framework_id")):
            return "'framework_id' differs from 'update_framework.framework_info.id'"
        return validate_roles(info)
    return None


def validate_roles(info: dict[str, Any]) -> str | None:
    caps = {c.get("type") for c in info.get("capabilities") or [] if isinstance(c, dict)}
    multi = "MULTI_ROLE" in caps
    if multi and "role" in info:
        return "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"
    if not multi and info.get("roles"):
        return "'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable"
    roles = framework_roles(info)
    if len(set(roles)) != len(roles):
        return f"'FrameworkInfo.roles' contains duplicate items: {roles}"
    for r in roles:
        if not re.match(ROLE_NAME, r):
            return f"'FrameworkInfo.roles' contains invalid role: '{r}'"
    return None


def framework_roles(info: dict[str, Any]) -> list[str]:
    if info.get("roles"):
        return [str(r) for r in info["roles"]]
    return [str(info.get("role") or "*")]


def framework_capabilities(info: dict[str, Any]) -> list[str]:
    known = {c.value for c in Capability}
    return [
        c["type"] for c in info.get("capabilities") or [] if isinstance(c, dict) and c.get("type") in known
    ]


def value_of(obj: Any) -> str | None:
    """`{"value": "x"}` -> "x" (Mesos ID messages)."""
    if isinstance(obj, dict):
        v = obj.get("value")
        return str(v) if v is not None else None
    return None


# ------------------------------------------------------------------ names


def object_name(mesos_id: str, prefix: str = "t") -> str:
    """A Kubernetes name for a Mesos id: the id itself when it is a DNS label, else a stable hash."""
    if len(mesos_id) <= 63 and re.match(DNS_LABEL, mesos_id):
        return mesos_id
    slug = re.sub(r"[^a-z0-9-]+", "-", mesos_id.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha1(mesos_id.encode()).hexdigest()[:12]
    return f"{slug or prefix}-{digest}"


def framework_name(display_name: str) -> str:
    """A new framework's object name (and Mesos FrameworkID): its name, made a DNS label, + a suffix."""
    slug = re.sub(r"[^a-z0-9-]+", "-", display_name.lower()).strip("-")[:40].strip("-") or "framework"
    return f"{slug}-{uuid.uuid4().hex[:8]}"


def label_value_ok(v: str) -> bool:
    return len(v) <= 63 and bool(_LABEL_VALUE.match(v))


# ------------------------------------------------------------------ RecordIO and events


def record(event: dict[str, Any], protobuf: bool = False) -> bytes:
    """One RecordIO record: `<length>\\n<data>`; compact ASCII JSON (clients slice by byte count),
    or the protobuf Event."""
    if protobuf:
        from mesoskube.mesosapi.proto import encode_event

        data = encode_event(event)
    else:
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=True).encode()
    return str(len(data)).encode() + b"\n" + data


def subscribed(framework_id: str, master_info: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "SUBSCRIBED",
        "subscribed": {
            "framework_id": {"value": framework_id},
            "heartbeat_interval_seconds": HEARTBEAT_INTERVAL_SECONDS,
            "master_info": master_info,
        },
    }


def heartbeat() -> dict[str, Any]:
    return {"type": "HEARTBEAT"}


def error(message: str) -> dict[str, Any]:
    return {"type": "ERROR", "error": {"message": message}}


def rescind(offer_id: str) -> dict[str, Any]:
    return {"type": "RESCIND", "rescind": {"offer_id": {"value": offer_id}}}


def master_info(host: str, port: int, master_id: str) -> dict[str, Any]:
    return {
        "id": master_id,
        "ip": 0,
        "port": port,
        "hostname": host,
        "pid": f"master@{host}:{port}",
        "version": MESOS_VERSION,
        "address": {"hostname": host, "ip": host, "port": port},
    }


def resources_json(r: Resources, role: str = "*", allocated: bool = True) -> list[dict[str, Any]]:
    """Mesos Resource messages (scalars, and ports as ranges)."""
    out: list[dict[str, Any]] = []
    for name in ("cpus", "mem", "disk", "gpus"):
        qty = float(getattr(r, name))
        if qty > 0:
            res: dict[str, Any] = {"name": name, "type": "SCALAR", "scalar": {"value": round(qty, 3)}}
            out.append(res)
    if r.ports:
        out.append(
            {
                "name": "ports",
                "type": "RANGES",
                "ranges": {"range": [{"begin": lo, "end": hi} for lo, hi in r.ports]},
            }
        )
    for res in out:
        res["role"] = "*"  # unreserved (the pre-reservation-refinement field clients still read)
        if allocated:
            res["allocation_info"] = {"role": role}
    return out


def attributes_json(attributes: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for k, v in sorted(attributes.items()):
        try:
            out.append({"name": k, "type": "SCALAR", "scalar": {"value": float(v)}})
        except ValueError:
            out.append({"name": k, "type": "TEXT", "text": {"value": v}})
    return out


def offer_json(offer_id: str, framework_id: str, agent: str, role: str, r: Resources, attrs: dict) -> dict:
    return {
        "id": {"value": offer_id},
        "framework_id": {"value": framework_id},
        "agent_id": {"value": agent},
        "hostname": agent,
        "allocation_info": {"role": role},
        "resources": resources_json(r, role),
        "attributes": attributes_json(attrs),
    }


def offers(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "OFFERS", "offers": {"offers": items}}


def update(
    task_id: str,
    state: str,
    *,
    agent_id: str | None,
    source: str,
    timestamp: float,
    reason: str | None = None,
    message: str | None = None,
    executor_id: str | None = None,
    uuid_bytes: bytes | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "task_id": {"value": task_id},
        "state": state,
        "source": source,
        "timestamp": timestamp,
    }
    if agent_id:
        status["agent_id"] = {"value": agent_id}
    if executor_id:
        status["executor_id"] = {"value": executor_id}
    if reason and reason not in MESOS_REASONS:
        message = f"{message} ({reason})" if message else reason
        reason = None
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if uuid_bytes is not None:
        status["uuid"] = base64.b64encode(uuid_bytes).decode()
    return {"type": "UPDATE", "update": {"status": status}}


# ------------------------------------------------------------------ TaskInfo -> mesoskube task


class TaskInfoError(ValueError):
    """A Mesos TaskInfo that cannot become a Task; the message names the field."""


def resources_of(items: list[dict[str, Any]]) -> Resources:
    values: dict[str, Any] = {}
    ranges: list[tuple[int, int]] = []
    for res in items or []:
        name = res.get("name")
        if name in ("cpus", "mem", "disk", "gpus"):
            values[name] = values.get(name, 0.0) + float((res.get("scalar") or {}).get("value") or 0)
        elif name == "ports":
            for rg in (res.get("ranges") or {}).get("range") or []:
                ranges.append((int(rg["begin"]), int(rg["end"])))
        else:
            raise TaskInfoError(
                f"resources: '{name}' is not offered by mesoskube (cpus, mem, disk, gpus, ports)"
            )
    if "gpus" in values:
        values["gpus"] = int(values["gpus"])
    if ranges:
        values["ports"] = ",".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in sorted(ranges))
    return Resources.from_mapping(values)


def command_of(cmd: dict[str, Any]) -> tuple[list[str], list[str], list[dict[str, str]]]:
    """CommandInfo -> (command, args, env): shell (the default) runs `value` with /bin/sh -c."""
    env = [
        {"name": str(v["name"]), "value": str(v.get("value") or "")}
        for v in (cmd.get("environment") or {}).get("variables") or []
        if v.get("name")
    ]
    value = cmd.get("value")
    if cmd.get("shell", True):
        return (["/bin/sh", "-c", value] if value else []), [], env
    arguments = [str(a) for a in cmd.get("arguments") or []]
    # Mesos execs `value` with `arguments` as argv (argv[0] included).
    return ([value] if value else []), arguments[1:], env


def task_of(info: dict[str, Any], default_image: str) -> tuple[str, dict[str, Any]]:
    """A Mesos TaskInfo -> (its Mesos task id, a mesoskube TaskInfo dict)."""
    task_id = value_of(info.get("task_id"))
    if not task_id:
        raise TaskInfoError("task_infos[].task_id.value is required")
    name = object_name(task_id)
    r = resources_of(info.get("resources") or [])
    labels: dict[str, str] = {}
    run_seconds = None
    for label in (info.get("labels") or {}).get("labels") or []:
        key, value = str(label.get("key") or ""), str(label.get("value") or "")
        if key == LABEL_RUN_DURATION:
            try:
                run_seconds = float(value.removesuffix("s"))
            except ValueError:
                raise TaskInfoError(
                    f"label {LABEL_RUN_DURATION}: '{value}' is not a number of seconds"
                ) from None
        elif _LABEL_KEY.match(key) and label_value_ok(value):
            labels[key] = value  # others cannot be pod labels; Mesos labels are free-form
    if name != task_id:
        if not label_value_ok(task_id):
            raise TaskInfoError(
                f"task_id '{task_id}': use a DNS label or at most 63 characters of [A-Za-z0-9_.-]"
            )
        labels[LABEL_MESOS_TASK_ID] = task_id
    command, args, env = command_of(info.get("command") or {})
    container: dict[str, Any] = {"image": default_image}
    docker = (info.get("container") or {}).get("docker") or {}
    if docker.get("image"):
        container["image"] = str(docker["image"])
    if command:
        container["command"] = command
    if args:
        container["args"] = args
    if env:
        container["env"] = env
    task: dict[str, Any] = {
        "name": name,
        "resources": r.to_mapping(),
        "container": container,
        "labels": labels,
    }
    if run_seconds is not None:
        task["runSeconds"] = run_seconds
    executor = value_of((info.get("executor") or {}).get("executor_id"))
    if executor:
        task["executor"] = object_name(executor, "e")
    return task_id, task


# Operations mesoskube cannot carry out, and why (what the framework is told). Mesos drops an
# operation that fails validation: it logs it, and a framework that gave the operation an `id`
# (operation feedback) gets UPDATE_OPERATION_STATUS with OPERATION_ERROR; the ACCEPT's other
# operations go on. mesoskube does the same rather than pretend a reservation or volume exists.
_NO_RESERVATIONS = (
    "Kubernetes nodes have no Mesos reservations (a MesosRole's quota and weight are mesoskube's "
    "way to set resources aside for a role)"
)
_NO_VOLUMES = (
    "mesoskube offers no disk resources to build persistent volumes from (use a PersistentVolumeClaim)"
)
_NO_PROVIDERS = "mesoskube has no storage resource providers"
UNSUPPORTED_OPERATIONS = {
    "RESERVE": _NO_RESERVATIONS,
    "UNRESERVE": _NO_RESERVATIONS,
    "CREATE": _NO_VOLUMES,
    "DESTROY": _NO_VOLUMES,
    "GROW_VOLUME": _NO_VOLUMES,
    "SHRINK_VOLUME": _NO_VOLUMES,
    "CREATE_DISK": _NO_PROVIDERS,
    "DESTROY_DISK": _NO_PROVIDERS,
}


def operation_refusal(op: dict[str, Any]) -> str:
    """Why an operation other than LAUNCH and LAUNCH_GROUP is dropped (the OPERATION_ERROR message)."""
    kind = str(op.get("type") or "UNKNOWN")
    why = UNSUPPORTED_OPERATIONS.get(kind, "unknown operation type")
    return f"{kind} operations are not supported by mesoskube: {why}"


def operation_error(operation_id: str, message: str) -> dict[str, Any]:
    """UPDATE_OPERATION_STATUS for a dropped operation: OPERATION_ERROR, no uuid (not acknowledged;
    Mesos's createOperationStatus for a dropped operation sets none either)."""
    status = {"operation_id": {"value": operation_id}, "state": "OPERATION_ERROR", "message": message}
    return {"type": "UPDATE_OPERATION_STATUS", "update_operation_status": {"status": status}}


def launch_tasks(operations: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The TaskInfos of LAUNCH and LAUNCH_GROUP operations, and the operations not supported."""
    infos: list[dict[str, Any]] = []
    unsupported: list[dict[str, Any]] = []
    for op in operations or []:
        kind = op.get("type")
        if kind == "LAUNCH":
            infos.extend((op.get("launch") or {}).get("task_infos") or [])
        elif kind == "LAUNCH_GROUP":
            group = op.get("launch_group") or {}
            executor = group.get("executor") or {}
            for t in (group.get("task_group") or {}).get("tasks") or []:
                infos.append({**t, "executor": t.get("executor") or executor})
        else:
            unsupported.append(op)
    return infos, unsupported
