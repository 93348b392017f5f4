# ruff: noqa: E501 (the schema tables read best one message per entry)
"""`application/x-protobuf` for the scheduler API: Call and Event in Mesos's v1 wire format.

The schema is the subset of mesos/v1/mesos.proto and scheduler.proto that mesoskube reads and writes,
with the same field numbers and enum values (wire compatibility is all that matters; names are
ours), built at import time as a descriptor (no protoc, no generated code). Fields outside the
subset are skipped when a Call is decoded, as protobuf skips any unknown field. Decoded calls become
the JSON form (snake_case names, enums by name, bytes base64) that the rest of the API handles.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError

PACKAGE = "mesoskube.mesosv1"
S, D, B, U32, U64, I32, BY = "string", "double", "bool", "uint32", "uint64", "int32", "bytes"
_SCALARS = {
    S: descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    D: descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    B: descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    U32: descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    U64: descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    I32: descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    BY: descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
}

ENUMS: dict[str, list[tuple[str, int]]] = {
    "CallType": [
        ("UNKNOWN", 0), ("SUBSCRIBE", 1), ("TEARDOWN", 2), ("ACCEPT", 3), ("DECLINE", 4),
        ("ACCEPT_INVERSE_OFFERS", 13), ("DECLINE_INVERSE_OFFERS", 14), ("REVIVE", 5), ("KILL", 6),
        ("SHUTDOWN", 7), ("ACKNOWLEDGE", 8), ("ACKNOWLEDGE_OPERATION_STATUS", 15), ("RECONCILE", 9),
        ("RECONCILE_OPERATIONS", 16), ("MESSAGE", 10), ("REQUEST", 11), ("SUPPRESS", 12),
        ("UPDATE_FRAMEWORK", 17),
    ],
    "EventType": [
        ("UNKNOWN", 0), ("SUBSCRIBED", 1), ("OFFERS", 2), ("INVERSE_OFFERS", 9), ("RESCIND", 3),
        ("RESCIND_INVERSE_OFFER", 10), ("UPDATE", 4), ("UPDATE_OPERATION_STATUS", 11), ("MESSAGE", 5),
        ("FAILURE", 6), ("ERROR", 7), ("HEARTBEAT", 8),
    ],
    "ValueType": [("SCALAR", 0), ("RANGES", 1), ("SET", 2), ("TEXT", 3)],
    "OperationType": [
        ("OPERATION_TYPE_UNKNOWN", 0), ("LAUNCH", 1), ("LAUNCH_GROUP", 6), ("RESERVE", 2), ("UNRESERVE", 3),
        ("CREATE", 4), ("DESTROY", 5), ("GROW_VOLUME", 11), ("SHRINK_VOLUME", 12), ("CREATE_DISK", 13),
        ("DESTROY_DISK", 14),
    ],
    "FrameworkCapabilityType": [
        ("CAPABILITY_UNKNOWN", 0), ("REVOCABLE_RESOURCES", 1), ("TASK_KILLING_STATE", 2), ("GPU_RESOURCES", 3),
        ("SHARED_RESOURCES", 4), ("PARTITION_AWARE", 5), ("MULTI_ROLE", 6), ("RESERVATION_REFINEMENT", 7),
        ("REGION_AWARE", 8),
    ],
    "OperationState": [
        ("OPERATION_UNSUPPORTED", 0), ("OPERATION_PENDING", 1), ("OPERATION_FINISHED", 2), ("OPERATION_FAILED", 3),
        ("OPERATION_ERROR", 4), ("OPERATION_DROPPED", 5), ("OPERATION_UNREACHABLE", 6),
        ("OPERATION_GONE_BY_OPERATOR", 7), ("OPERATION_RECOVERING", 8), ("OPERATION_UNKNOWN", 9),
    ],
    "ContainerType": [("CONTAINER_UNSET", 0), ("DOCKER", 1), ("MESOS", 2)],
    "TaskState": [
        ("TASK_STAGING", 6), ("TASK_STARTING", 0), ("TASK_RUNNING", 1), ("TASK_KILLING", 8),
        ("TASK_FINISHED", 2), ("TASK_FAILED", 3), ("TASK_KILLED", 4), ("TASK_ERROR", 7), ("TASK_LOST", 5),
        ("TASK_DROPPED", 9), ("TASK_UNREACHABLE", 10), ("TASK_GONE", 11), ("TASK_GONE_BY_OPERATOR", 12),
        ("TASK_UNKNOWN", 13),
    ],
    "Source": [("SOURCE_MASTER", 0), ("SOURCE_AGENT", 1), ("SOURCE_EXECUTOR", 2)],
    "Reason": [
        ("REASON_COMMAND_EXECUTOR_FAILED", 0), ("REASON_CONTAINER_LAUNCH_FAILED", 21),
        ("REASON_CONTAINER_LIMITATION", 19), ("REASON_CONTAINER_LIMITATION_DISK", 20),
        ("REASON_CONTAINER_LIMITATION_MEMORY", 8), ("REASON_CONTAINER_PREEMPTED", 17),
        ("REASON_CONTAINER_UPDATE_FAILED", 22), ("REASON_MAX_COMPLETION_TIME_REACHED", 33),
        ("REASON_EXECUTOR_REGISTRATION_TIMEOUT", 23), ("REASON_EXECUTOR_REREGISTRATION_TIMEOUT", 24),
        ("REASON_EXECUTOR_TERMINATED", 1), ("REASON_EXECUTOR_UNREGISTERED", 2), ("REASON_FRAMEWORK_REMOVED", 3),
        ("REASON_GC_ERROR", 4), ("REASON_INVALID_FRAMEWORKID", 5), ("REASON_INVALID_OFFERS", 6),
        ("REASON_IO_SWITCHBOARD_EXITED", 27), ("REASON_MASTER_DISCONNECTED", 7), ("REASON_RECONCILIATION", 9),
        ("REASON_RESOURCES_UNKNOWN", 18), ("REASON_AGENT_DISCONNECTED", 10), ("REASON_AGENT_DRAINING", 34),
        ("REASON_AGENT_REMOVED", 11), ("REASON_AGENT_REMOVED_BY_OPERATOR", 31), ("REASON_AGENT_REREGISTERED", 32),
        ("REASON_AGENT_RESTARTED", 12), ("REASON_AGENT_UNKNOWN", 13), ("REASON_TASK_KILLED_DURING_LAUNCH", 30),
        ("REASON_TASK_CHECK_STATUS_UPDATED", 28), ("REASON_TASK_HEALTH_CHECK_STATUS_UPDATED", 29),
        ("REASON_TASK_GROUP_INVALID", 25), ("REASON_TASK_GROUP_UNAUTHORIZED", 26), ("REASON_TASK_INVALID", 14),
        ("REASON_TASK_UNAUTHORIZED", 15), ("REASON_TASK_UNKNOWN", 16),
    ],
}  # fmt: skip

# message -> [(field, number, type)]; a type starting with "*" is repeated.
MESSAGES: dict[str, list[tuple[str, int, str]]] = {
    "Empty": [],
    "FrameworkID": [("value", 1, S)],
    "OfferID": [("value", 1, S)],
    "AgentID": [("value", 1, S)],
    "TaskID": [("value", 1, S)],
    "ExecutorID": [("value", 1, S)],
    "Label": [("key", 1, S), ("value", 2, S)],
    "Labels": [("labels", 1, "*Label")],
    "FrameworkCapability": [("type", 1, "FrameworkCapabilityType")],
    "FrameworkInfo": [
        ("user", 1, S), ("name", 2, S), ("id", 3, "FrameworkID"), ("failover_timeout", 4, D),
        ("checkpoint", 5, B), ("role", 6, S), ("roles", 12, "*string"), ("hostname", 7, S),
        ("principal", 8, S), ("webui_url", 9, S), ("capabilities", 10, "*FrameworkCapability"),
        ("labels", 11, "Labels"),
    ],
    "Address": [("hostname", 1, S), ("ip", 2, S), ("port", 3, I32)],
    "MasterInfo": [
        ("id", 1, S), ("ip", 2, U32), ("port", 3, U32), ("pid", 4, S), ("hostname", 5, S), ("version", 6, S),
        ("address", 7, "Address"),
    ],
    "Scalar": [("value", 1, D)],
    "Range": [("begin", 1, U64), ("end", 2, U64)],
    "Ranges": [("range", 1, "*Range")],
    "ValueSet": [("item", 1, "*string")],
    "Text": [("value", 1, S)],
    "AllocationInfo": [("role", 1, S)],
    "Resource": [
        ("name", 1, S), ("type", 2, "ValueType"), ("scalar", 3, "Scalar"), ("ranges", 4, "Ranges"),
        ("set", 5, "ValueSet"), ("role", 6, S), ("allocation_info", 11, "AllocationInfo"),
    ],
    "Attribute": [
        ("name", 1, S), ("type", 2, "ValueType"), ("scalar", 3, "Scalar"), ("ranges", 4, "Ranges"),
        ("set", 6, "ValueSet"), ("text", 5, "Text"),
    ],
    "Offer": [
        ("id", 1, "OfferID"), ("framework_id", 2, "FrameworkID"), ("agent_id", 3, "AgentID"), ("hostname", 4, S),
        ("resources", 5, "*Resource"), ("attributes", 7, "*Attribute"), ("executor_ids", 6, "*ExecutorID"),
        ("allocation_info", 10, "AllocationInfo"),
    ],
    "Variable": [("name", 1, S), ("value", 2, S)],
    "Environment": [("variables", 1, "*Variable")],
    "CommandInfo": [
        ("environment", 2, "Environment"), ("shell", 6, B), ("value", 3, S), ("arguments", 7, "*string"),
        ("user", 5, S),
    ],
    "DockerInfo": [("image", 1, S)],
    "ContainerInfo": [("type", 1, "ContainerType"), ("hostname", 4, S), ("docker", 3, "DockerInfo")],
    "ExecutorInfo": [
        ("executor_id", 1, "ExecutorID"), ("framework_id", 8, "FrameworkID"), ("command", 7, "CommandInfo"),
        ("container", 11, "ContainerInfo"), ("resources", 5, "*Resource"), ("name", 9, S), ("labels", 14, "Labels"),
    ],
    "TaskInfo": [
        ("name", 1, S), ("task_id", 2, "TaskID"), ("agent_id", 3, "AgentID"), ("resources", 4, "*Resource"),
        ("executor", 5, "ExecutorInfo"), ("command", 7, "CommandInfo"), ("container", 9, "ContainerInfo"),
        ("data", 6, BY), ("labels", 10, "Labels"),
    ],
    "TaskGroupInfo": [("tasks", 1, "*TaskInfo")],
    "Launch": [("task_infos", 1, "*TaskInfo")],
    "LaunchGroup": [("executor", 1, "ExecutorInfo"), ("task_group", 2, "TaskGroupInfo")],
    "OperationID": [("value", 1, S)],
    "Operation": [
        ("type", 1, "OperationType"), ("id", 12, "OperationID"), ("launch", 2, "Launch"),
        ("launch_group", 7, "LaunchGroup"),
    ],
    "OperationStatus": [
        ("operation_id", 1, "OperationID"), ("state", 2, "OperationState"), ("message", 3, S), ("uuid", 5, "UUID"),
        ("agent_id", 6, "AgentID"),
    ],
    "UUID": [("value", 1, BY)],
    "UpdateOperationStatus": [("status", 1, "OperationStatus")],
    "Filters": [("refuse_seconds", 1, D)],
    "TaskStatus": [
        ("task_id", 1, "TaskID"), ("state", 2, "TaskState"), ("message", 4, S), ("source", 9, "Source"),
        ("reason", 10, "Reason"), ("data", 3, BY), ("agent_id", 5, "AgentID"), ("executor_id", 7, "ExecutorID"),
        ("timestamp", 6, D), ("uuid", 11, BY), ("healthy", 8, B), ("labels", 12, "Labels"),
    ],
    "Subscribe": [("framework_info", 1, "FrameworkInfo"), ("suppressed_roles", 2, "*string")],
    "Accept": [("offer_ids", 1, "*OfferID"), ("operations", 2, "*Operation"), ("filters", 3, "Filters")],
    "Decline": [("offer_ids", 1, "*OfferID"), ("filters", 2, "Filters")],
    "Roles": [("roles", 1, "*string")],
    "Kill": [("task_id", 1, "TaskID"), ("agent_id", 2, "AgentID")],
    "Shutdown": [("executor_id", 1, "ExecutorID"), ("agent_id", 2, "AgentID")],
    "Acknowledge": [("agent_id", 1, "AgentID"), ("task_id", 2, "TaskID"), ("uuid", 3, BY)],
    "ReconcileTask": [("task_id", 1, "TaskID"), ("agent_id", 2, "AgentID")],
    "Reconcile": [("tasks", 1, "*ReconcileTask")],
    "CallMessage": [("agent_id", 1, "AgentID"), ("executor_id", 2, "ExecutorID"), ("data", 3, BY)],
    "Request": [("agent_id", 1, "AgentID"), ("resources", 2, "*Resource")],
    "UpdateFramework": [("framework_info", 1, "FrameworkInfo"), ("suppressed_roles", 2, "*string")],
    "Call": [
        ("framework_id", 1, "FrameworkID"), ("type", 2, "CallType"), ("subscribe", 3, "Subscribe"),
        ("accept", 4, "Accept"), ("decline", 5, "Decline"), ("accept_inverse_offers", 13, "Empty"),
        ("decline_inverse_offers", 14, "Empty"), ("revive", 15, "Roles"), ("kill", 6, "Kill"),
        ("shutdown", 7, "Shutdown"), ("acknowledge", 8, "Acknowledge"),
        ("acknowledge_operation_status", 17, "Empty"), ("reconcile", 9, "Reconcile"),
        ("reconcile_operations", 18, "Empty"), ("message", 10, "CallMessage"), ("request", 11, "Request"),
        ("suppress", 16, "Roles"), ("update_framework", 19, "UpdateFramework"),
    ],
    "Subscribed": [
        ("framework_id", 1, "FrameworkID"), ("heartbeat_interval_seconds", 2, D), ("master_info", 3, "MasterInfo"),
    ],
    "Offers": [("offers", 1, "*Offer")],
    "Rescind": [("offer_id", 1, "OfferID")],
    "Update": [("status", 1, "TaskStatus")],
    "Error": [("message", 1, S)],
    "Event": [
        ("type", 1, "EventType"), ("subscribed", 2, "Subscribed"), ("offers", 3, "Offers"),
        ("rescind", 4, "Rescind"), ("update", 5, "Update"),
        ("update_operation_status", 11, "UpdateOperationStatus"), ("error", 8, "Error"),
    ],
}  # fmt: skip

# Enum values are scoped like C++ (per package): Call.Type and Event.Type share names (UNKNOWN,
# MESSAGE), so those two are nested in their message, as in scheduler.proto; the other enums' zero
# values got a prefix of ours (names are not on the wire).
_NESTED = {"CallType": "Call", "EventType": "Event"}


def _type_name(name: str) -> str:
    return f".{PACKAGE}.{_NESTED[name]}.Type" if name in _NESTED else f".{PACKAGE}.{name}"


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="mesoskube/mesosv1.proto", package=PACKAGE, syntax="proto2")
    for name, fields in MESSAGES.items():
        m = f.message_type.add(name=name)
        for ename, parent in _NESTED.items():
            if parent == name:
                e = m.enum_type.add(name="Type")
                for vname, number in ENUMS[ename]:
                    e.value.add(name=vname, number=number)
        for fname, number, ftype in fields:
            fd = m.field.add(name=fname, number=number, json_name=fname)
            repeated = ftype.startswith("*")
            ftype = ftype.lstrip("*")
            fd.label = fd.LABEL_REPEATED if repeated else fd.LABEL_OPTIONAL
            if ftype in _SCALARS:
                fd.type = _SCALARS[ftype]
            elif ftype in ENUMS:
                fd.type, fd.type_name = fd.TYPE_ENUM, _type_name(ftype)
            else:
                fd.type, fd.type_name = fd.TYPE_MESSAGE, f".{PACKAGE}.{ftype}"
    for name, values in ENUMS.items():
        if name not in _NESTED:
            e = f.enum_type.add(name=name)
            for vname, number in values:
                e.value.add(name=vname, number=number)
    return f


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
Call = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.Call"))
Event = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.Event"))


def decode_call(body: bytes) -> dict[str, Any]:
    """A protobuf Call -> its JSON form; ValueError when the bytes are not a Call."""
    msg = Call()
    try:
        msg.ParseFromString(body)
    except DecodeError as e:
        raise ValueError(str(e)) from None
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def encode_event(event: dict[str, Any]) -> bytes:
    """An event's JSON form -> protobuf bytes (fields outside the subset are dropped)."""
    msg = Event()
    json_format.ParseDict(event, msg, ignore_unknown_fields=True)
    return msg.SerializeToString()


def encode_call(call: dict[str, Any]) -> bytes:
    """For tests and tools: a Call's JSON form -> protobuf bytes."""
    msg = Call()
    json_format.ParseDict(call, msg, ignore_unknown_fields=True)
    return msg.SerializeToString()


def decode_event(data: bytes) -> dict[str, Any]:
    """For tests and tools: protobuf Event bytes -> the JSON form."""
    msg = Event()
    msg.ParseFromString(data)
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)
