"""The Mesos HTTP API's pure parts: call validation (Mesos's messages), RecordIO, TaskInfo translation,
and the read endpoints' JSON."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from mesoskube.mesosapi import protocol as p
from mesoskube.mesosapi import state as st
from mesoskube.mesosapi.server import normalize
from mesoskube.resources import Resources


def _call(body: dict | bytes, ctype: str | None = "application/json") -> dict:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return p.parse_call(ctype, raw)


SUBSCRIBE = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}}


@pytest.mark.parametrize(
    ("ctype", "body", "status", "message"),
    [
        (None, b"{}", 400, "Expecting 'Content-Type' to be present"),
        ("text/plain", b"{}", 415, "Expecting 'Content-Type' of application/json or application/x-protobuf"),
        ("application/x-protobuf", b"\xff\xff", 400, "Failed to parse body into Call protobuf"),
        ("application/json", b"{not json", 400, "Failed to parse body into JSON"),
        ("application/json", b"[]", 400, "Failed to convert JSON into Call protobuf"),
        (
            "application/json",
            b"{}",
            400,
            "Failed to validate scheduler::Call: Expecting 'type' to be present",
        ),
        ("application/json", b'{"type":"ACCEPT"}', 400, "Expecting 'framework_id' to be present"),
        (
            "application/json",
            b'{"type":"KILL","framework_id":{"value":"f"}}',
            400,
            "Expecting 'kill' to be present",
        ),
        ("application/json", b'{"type":"SUBSCRIBE"}', 400, "Expecting 'subscribe' to be present"),
    ],
)
def test_bad_calls_get_mesos_status_and_message(ctype, body, status, message) -> None:
    with pytest.raises(p.CallError) as e:
        _call(body, ctype)
    assert e.value.status == status
    assert message in e.value.message


def test_subscribe_validation() -> None:
    assert _call(SUBSCRIBE)["type"] == "SUBSCRIBE"
    with_id = json.loads(json.dumps(SUBSCRIBE))
    with_id["subscribe"]["framework_info"]["id"] = {"value": "a"}
    with pytest.raises(p.CallError, match=r"'framework_id' differs from 'subscribe\.framework_info\.id'"):
        _call(with_id)
    with_id["framework_id"] = {"value": "a"}
    assert _call(with_id)
    assert p.validate_roles({"roles": ["a"]}) and "MULTI_ROLE" in p.validate_roles({"roles": ["a"]})
    assert p.validate_roles({"roles": ["a", "a"], "capabilities": [{"type": "MULTI_ROLE"}]})
    assert p.validate_roles({"role": "bad role"})
    assert p.validate_roles({"role": "batch"}) is None
    assert p.framework_roles({"role": "batch"}) == ["batch"] and p.framework_roles({}) == ["*"]


def test_acknowledge_needs_a_uuid_of_16_bytes() -> None:
    good = base64.b64encode(uuid.uuid4().bytes).decode()
    ack = {"type": "ACKNOWLEDGE", "framework_id": {"value": "f"}, "acknowledge": {"uuid": good}}
    assert _call(ack)
    ack["acknowledge"]["uuid"] = base64.b64encode(b"short").decode()
    with pytest.raises(p.CallError, match="Invalid UUID"):
        _call(ack)


def test_unknown_json_fields_are_ignored() -> None:
    assert _call({**SUBSCRIBE, "extra": 1})


def test_recordio_is_length_newline_compact_ascii_json() -> None:
    rec = p.record({"type": "ERROR", "error": {"message": "é"}})
    length, _, data = rec.partition(b"\n")
    assert int(length) == len(data) and data == b'{"type":"ERROR","error":{"message":"\\u00e9"}}'


def test_offer_json_has_mesos_resources_and_attributes() -> None:
    o = p.offer_json(
        "o1",
        "fw",
        "node-1",
        "*",
        Resources(cpus=2, mem=1024, ports=((31000, 31005),)),
        {"zone": "a", "rack": "3"},
    )
    assert o["id"] == {"value": "o1"} and o["agent_id"] == {"value": "node-1"} and o["hostname"] == "node-1"
    by = {r["name"]: r for r in o["resources"]}
    assert by["cpus"]["scalar"] == {"value": 2.0} and by["mem"]["type"] == "SCALAR"
    assert by["ports"]["ranges"] == {"range": [{"begin": 31000, "end": 31005}]}
    assert by["cpus"]["allocation_info"] == {"role": "*"}
    assert {"name": "rack", "type": "SCALAR", "scalar": {"value": 3.0}} in o["attributes"]
    assert {"name": "zone", "type": "TEXT", "text": {"value": "a"}} in o["attributes"]


def test_update_carries_uuid_and_agent() -> None:
    raw = uuid.uuid4().bytes
    ev = p.update("t", "TASK_RUNNING", agent_id="n", source="SOURCE_EXECUTOR", timestamp=1.0, uuid_bytes=raw)
    s = ev["update"]["status"]
    assert base64.b64decode(s["uuid"]) == raw and s["agent_id"] == {"value": "n"}
    assert (
        "uuid"
        not in p.update("t", "TASK_LOST", agent_id="n", source="SOURCE_MASTER", timestamp=1)["update"][
            "status"
        ]
    )


def test_reasons_outside_mesos_enum_move_into_the_message() -> None:
    ev = p.update(
        "t",
        "TASK_FINISHED",
        agent_id="n",
        source="SOURCE_EXECUTOR",
        timestamp=1.0,
        reason="REASON_COMMAND_EXECUTOR_COMPLETED",
        message="pod Succeeded",
    )
    s = ev["update"]["status"]
    assert "reason" not in s and s["message"] == "pod Succeeded (REASON_COMMAND_EXECUTOR_COMPLETED)"
    ok = p.update(
        "t", "TASK_LOST", agent_id="n", source="SOURCE_MASTER", timestamp=1.0, reason="REASON_AGENT_REMOVED"
    )
    assert ok["update"]["status"]["reason"] == "REASON_AGENT_REMOVED"


def _info(**kw) -> dict:
    base = {
        "name": "x",
        "task_id": {"value": "task-1"},
        "agent_id": {"value": "n"},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31001}]}},
        ],
        "command": {"value": "echo hi", "environment": {"variables": [{"name": "A", "value": "1"}]}},
    }
    return {**base, **kw}


def test_taskinfo_becomes_a_task_with_command_image_resources_env_and_labels() -> None:
    labels = {
        "labels": [
            {"key": "app", "value": "web"},
            {"key": "free form", "value": "x y"},
            {"key": p.LABEL_RUN_DURATION, "value": "2.5"},
        ]
    }
    tid, task = p.task_of(_info(labels=labels, container={"docker": {"image": "nginx:1"}}), "busybox")
    assert tid == "task-1" and task["name"] == "task-1"
    assert task["container"] == {
        "image": "nginx:1",
        "command": ["/bin/sh", "-c", "echo hi"],
        "env": [{"name": "A", "value": "1"}],
    }
    assert task["resources"] == {"cpus": 0.5, "mem": 64.0, "ports": "31000-31001"}
    assert task["labels"] == {"app": "web"} and task["runSeconds"] == 2.5


def test_non_shell_command_and_default_image() -> None:
    info = _info(command={"shell": False, "value": "/bin/echo", "arguments": ["echo", "a", "b"]})
    _, task = p.task_of(info, "busybox:1.36")
    assert task["container"]["image"] == "busybox:1.36"
    assert task["container"]["command"] == ["/bin/echo"] and task["container"]["args"] == ["a", "b"]


def test_task_ids_that_are_no_dns_label_get_a_stable_name_and_keep_their_id() -> None:
    tid, task = p.task_of(_info(task_id={"value": "My_Task.1"}), "i")
    assert tid == "My_Task.1" and task["name"] == p.object_name("My_Task.1") != "My_Task.1"
    assert task["labels"][p.LABEL_MESOS_TASK_ID] == "My_Task.1"
    with pytest.raises(p.TaskInfoError, match="task_id"):
        p.task_of(_info(task_id={"value": "a b/c"}), "i")
    with pytest.raises(p.TaskInfoError, match="not offered"):
        p.task_of(_info(resources=[{"name": "bogus", "scalar": {"value": 1}}]), "i")


def test_launch_group_tasks_carry_their_executor() -> None:
    ops = [
        {
            "type": "LAUNCH_GROUP",
            "launch_group": {
                "executor": {"executor_id": {"value": "ex"}},
                "task_group": {"tasks": [_info()]},
            },
        },
        {"type": "RESERVE"},
    ]
    infos, unsupported = p.launch_tasks(ops)
    assert unsupported == [{"type": "RESERVE"}]
    _, task = p.task_of(infos[0], "i")
    assert task["executor"] == "ex"


def test_unsupported_operations_are_refused_with_a_reason_and_encode_in_protobuf() -> None:
    from mesoskube.mesosapi import proto

    for kind in p.UNSUPPORTED_OPERATIONS:
        assert p.operation_refusal({"type": kind}).startswith(
            f"{kind} operations are not supported by mesoskube: "
        )
    assert "unknown operation type" in p.operation_refusal({"type": "TELEPORT"})
    event = p.operation_error("op-1", p.operation_refusal({"type": "RESERVE"}))
    status = event["update_operation_status"]["status"]
    assert status["state"] == "OPERATION_ERROR" and "uuid" not in status
    assert proto.decode_event(proto.encode_event(event)) == event
    # An operation's id survives protobuf decoding of an ACCEPT.
    call = {
        "type": "ACCEPT",
        "framework_id": {"value": "f"},
        "accept": {"offer_ids": [{"value": "o"}], "operations": [{"type": "CREATE", "id": {"value": "v1"}}]},
    }
    assert proto.decode_call(proto.encode_call(call)) == call


def test_paths_under_master_and_with_trailing_slash_are_the_same() -> None:
    assert normalize("/master/frameworks/") == "/frameworks" == normalize("/frameworks")
    assert normalize("/master/api/v1/scheduler") == "/api/v1/scheduler"
    assert normalize("/metrics/snapshot/") == "/metrics/snapshot"


def _snap() -> st.Snapshot:
    node = {
        "metadata": {"name": "n1", "labels": {"zone": "a"}, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    fw = {
        "metadata": {"name": "fw", "namespace": "ns", "annotations": {st.ANNOTATION_NAME: "My FW"}},
        "spec": {"roles": ["*"], "user": "u"},
        "status": {"phase": "Subscribed"},
    }

    def task(name, state, launched):
        return {
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": launched},
            "spec": {"framework": "fw", "agent": "n1", "resources": {"cpus": 1, "mem": 128}},
            "status": {"state": state, "launchedAt": launched},
        }

    offer = {
        "metadata": {"name": "o1", "namespace": "ns"},
        "spec": {"framework": "fw", "agent": "n1", "resources": {"cpus": 2, "mem": 1024}},
    }
    return st.Snapshot(
        nodes=[node],
        frameworks=[fw],
        offers=[offer],
        tasks=[
            task("a", "TASK_RUNNING", "2026-01-01T00:00:01Z"),
            task("b", "TASK_FINISHED", "2026-01-01T00:00:02Z"),
        ],
    )


def test_state_endpoints_have_mesos_shapes() -> None:
    snap = _snap()
    (agent,) = st.slaves(snap)["slaves"]
    assert agent["id"] == "n1" and agent["resources"]["cpus"] == 4 and agent["resources"]["mem"] == 8192
    assert agent["used_resources"]["cpus"] == 1 and agent["offered_resources"]["cpus"] == 2
    assert agent["resources"]["ports"] == "[31000-32000]" and agent["attributes"] == {"zone": "a"}
    (fw,) = st.frameworks(snap)["frameworks"]
    assert fw["name"] == "My FW" and fw["active"] and [t["id"] for t in fw["tasks"]] == ["a"]
    assert [t["id"] for t in fw["completed_tasks"]] == ["b"] and fw["offers"][0]["slave_id"] == "n1"
    assert fw["tasks"][0]["slave_id"] == "n1"
    full = st.state(snap)
    assert full["activated_slaves"] == 1 and full["version"] == p.MESOS_VERSION
    assert st.metrics_snapshot(snap, 1.0)["master/tasks_running"] == 1.0
    assert st.state_summary(snap)["slaves"][0]["TASK_RUNNING"] == 1


def test_tasks_endpoint_limit_offset_order_filters() -> None:
    snap = _snap()
    assert [t["id"] for t in st.tasks(snap, {})["tasks"]] == ["b", "a"]  # default order: des
    assert [t["id"] for t in st.tasks(snap, {"order": "asc", "limit": "-1"})["tasks"]] == ["a", "b"]
    assert [t["id"] for t in st.tasks(snap, {"order": "asc", "limit": "1", "offset": "1"})["tasks"]] == ["b"]
    assert st.tasks(snap, {"task_id": "a"})["tasks"][0]["state"] == "TASK_RUNNING"
    assert st.tasks(snap, {"framework_id": "other"})["tasks"] == []
    with pytest.raises(ValueError, match="order"):
        st.tasks(snap, {"order": "sideways"})


def test_protobuf_calls_decode_to_the_json_form() -> None:
    from mesoskube.mesosapi import proto

    call = {
        "framework_id": {"value": "f"},
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [{"value": "o"}],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [_info()]}}],
            "filters": {"refuse_seconds": 2.5},
        },
    }
    decoded = _call(proto.encode_call(call), "application/x-protobuf")
    assert decoded["accept"]["filters"] == {"refuse_seconds": 2.5}
    _, task = p.task_of(decoded["accept"]["operations"][0]["launch"]["task_infos"][0], "i")
    assert task == p.task_of(_info(), "i")[1]  # same task as from JSON (uint64 ranges come as strings)
    raw = uuid.uuid4().bytes
    ack = {
        "type": "ACKNOWLEDGE",
        "framework_id": {"value": "f"},
        "acknowledge": {"uuid": base64.b64encode(raw).decode(), "task_id": {"value": "t"}},
    }
    assert (
        base64.b64decode(_call(proto.encode_call(ack), "application/x-protobuf")["acknowledge"]["uuid"])
        == raw
    )


def test_protobuf_events_carry_the_same_fields() -> None:
    from mesoskube.mesosapi import proto

    offer = p.offer_json("o1", "fw", "n", "*", Resources(cpus=1, ports=((31000, 31001),)), {"zone": "a"})
    for event in (
        p.subscribed("fw", p.master_info("h", 5050, "id")),
        p.offers([offer]),
        p.update(
            "t",
            "TASK_RUNNING",
            agent_id="n",
            source="SOURCE_EXECUTOR",
            timestamp=2.0,
            uuid_bytes=uuid.uuid4().bytes,
            reason="REASON_RECONCILIATION",
        ),
        p.error("gone"),
        p.heartbeat(),
        p.rescind("o1"),
    ):
        back = proto.decode_event(proto.encode_event(event))
        assert back["type"] == event["type"]
        assert json.dumps(back, sort_keys=True).replace('"31000"', "31000").replace(
            '"31001"', "31001"
        ) == json.dumps(event, sort_keys=True).replace("31000", "31000"), event["type"]
    record = p.record(p.heartbeat(), protobuf=True)
    length, _, data = record.partition(b"\n")
    assert int(length) == len(data) == 2  # field 1 (type), varint HEARTBEAT = 8


def test_roles_endpoint_weights_quota_and_dominant_share() -> None:
    snap = _snap()
    snap.roles = [{"metadata": {"name": "batch"}, "spec": {"weight": 2, "quota": {"cpus": 10, "mem": None}}}]
    by = {r["name"]: r for r in st.roles(snap)["roles"]}
    assert set(by) == {"*", "batch"}
    star = by["*"]
    assert star["frameworks"] == ["fw"] and star["resources"]["cpus"] == 1 and star["weight"] == 1.0
    assert star["dominant_share"] == 0.25  # 1 of 4 cpus (128 of 8192 MB is less)
    assert by["batch"]["weight"] == 2.0 and by["batch"]["quota"] == {"cpus": 10}
    assert by["batch"]["dominant_share"] == 0 and by["batch"]["frameworks"] == []


def test_the_lease_carries_the_holders_address_and_only_the_holders(monkeypatch) -> None:
    from mesoskube.mesosapi import leader
    from mesoskube.settings import Settings

    ours = leader.lease_annotations("replica-a", "10.0.0.5:5050")
    other = {"team": "x"}
    # The holder writes its address; a release (no holder) or another holder's write drops it.
    written = leader.annotate(other, "replica-a", "replica-a", ours)
    assert written == {"team": "x", **ours}
    assert leader.annotate(written, "", "replica-a", ours) == other
    assert leader.annotate(written, "replica-b", "replica-a", ours) == other
    assert leader.leader_address("replica-a", written) == "10.0.0.5:5050"
    # An address left by a former holder is not believed.
    assert leader.leader_address("replica-b", written) is None
    assert leader.leader_address(None, written) is None
    assert (
        leader.advertised_address(Settings(httpAdvertiseAddress="mesos.example:5050"), 1)
        == "mesos.example:5050"
    )
    monkeypatch.delenv("POD_IP", raising=False)
    assert leader.advertised_address(Settings(httpHost="127.0.0.1"), 5051) == "127.0.0.1:5051"
    monkeypatch.setenv("POD_IP", "10.244.0.7")
    assert leader.advertised_address(Settings(), 5050) == "10.244.0.7:5050"
