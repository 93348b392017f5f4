"""The Mesos HTTP API's protocol against a real API server: status codes and messages, the event
stream (takeover by a second SUBSCRIBE, failover timeout after a drop), read endpoints, authentication."""

from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from mesoskube.cluster.local import free_port
from mesoskube.mesosapi.leader import ADDRESS_ANNOTATION, HOLDER_ANNOTATION
from mesoskube.settings import Settings
from tests.helpers import eventually

JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class Api:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body: dict | bytes | None = None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers if headers is not None else dict(JSON))
        resp = conn.getresponse()
        out = resp.status, resp.read().decode(), dict(resp.getheaders())
        conn.close()
        return out

    def call(self, fid: str, stream_id: str | None, body: dict):
        headers = dict(JSON)
        if stream_id:
            headers["Mesos-Stream-Id"] = stream_id
        return self.request("POST", "/api/v1/scheduler", {"framework_id": {"value": fid}, **body}, headers)

    def get(self, path: str):
        status, text, headers = self.request("GET", path, headers={})
        return status, (
            json.loads(text)
            if text and headers.get("Content-Type", "").startswith("application/json")
            else text
        )


class Subscription:
    """A raw SUBSCRIBE stream, read record by record (RecordIO over chunked HTTP)."""

    def __init__(self, port: int, info: dict, timeout: float = 20) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        body: dict = {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}
        if info.get("id"):
            body["framework_id"] = info["id"]
        self.conn.request("POST", "/api/v1/scheduler", body=json.dumps(body), headers=JSON)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        assert self.resp.getheader("Transfer-Encoding") == "chunked"
        self.stream_id = self.resp.getheader("Mesos-Stream-Id")

    def next(self, skip_heartbeats: bool = True) -> dict | None:
        while True:
            line = self.resp.readline()
            if not line:
                return None  # the master closed the stream
            event = json.loads(self.resp.read(int(line)))
            if not (skip_heartbeats and event["type"] == "HEARTBEAT"):
                return event

    def until(self, kind: str) -> dict:
        while True:
            event = self.next()
            assert event is not None, f"stream closed before {kind}"
            if event["type"] == kind:
                return event

    def close(self) -> None:
        self.conn.sock.close() if self.conn.sock else None
        self.conn.close()


def _info(name: str = "raw", **kw) -> dict:
    return {"user": "nobody", "name": name, **kw}


@pytest.fixture
def api(own_master) -> Api:
    port = free_port()
    own_master(httpPort=port, httpHost="127.0.0.1", httpAuth="none")
    return Api(port)


def test_bad_calls_get_mesos_status_codes_and_messages(api: Api) -> None:
    s, text, headers = api.request("GET", "/api/v1/scheduler", headers={})
    assert s == 405 and headers["Allow"] == "POST"
    s, text, _ = api.request("POST", "/master/api/v1/scheduler", b"{}", headers={})
    assert (s, text) == (400, "Expecting 'Content-Type' to be present")
    s, text, _ = api.request("POST", "/api/v1/scheduler", b"{}", headers={"Content-Type": "text/plain"})
    assert s == 415 and "Expecting 'Content-Type' of application/json" in text
    s, text, _ = api.request("POST", "/api/v1/scheduler", b"{nope")
    assert s == 400 and text.startswith("Failed to parse body into JSON")
    s, text, _ = api.request("POST", "/api/v1/scheduler", {"type": "DECLINE"})
    assert (s, text) == (400, "Failed to validate scheduler::Call: Expecting 'framework_id' to be present")
    sub = {"type": "SUBSCRIBE", "subscribe": {"framework_info": _info()}}
    s, text, _ = api.request(
        "POST", "/api/v1/scheduler", sub, {"Content-Type": "application/json", "Accept": "text/html"}
    )
    assert s == 406 and "Expecting 'Accept' to allow" in text
    s, text, _ = api.request("POST", "/api/v1/scheduler", sub, {**JSON, "Mesos-Stream-Id": "x"})
    assert (s, text) == (400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
    s, text, _ = api.call("nobody-home", "x", {"type": "REVIVE"})
    assert (s, text) == (400, "Framework cannot be found")
    # A FrameworkInfo that fails validation: the 200 stream carries one ERROR event, then closes.
    bad = Subscription(api.port, _info(role="no spaces allowed"))
    event = bad.next()
    assert (
        event["type"] == "ERROR"
        and "'FrameworkInfo.roles' contains invalid role" in event["error"]["message"]
    )
    assert bad.next() is None
    bad.close()


def test_subscribed_stream_calls_and_a_second_subscribe_taking_over(
    api: Api, kube, namespace, fake_nodes
) -> None:
    (node,) = fake_nodes(1, "cpu=2,memory=4Gi")
    first = Subscription(api.port, _info(failover_timeout=60))
    subscribed = first.until("SUBSCRIBED")["subscribed"]
    fid = subscribed["framework_id"]["value"]
    assert subscribed["heartbeat_interval_seconds"] == 15
    offers = first.until("OFFERS")["offers"]["offers"]
    assert offers[0]["agent_id"]["value"] == node
    # The framework is a Framework object, the offer an Offer object.
    fw = kube.get("frameworks", namespace, fid)
    assert fw["metadata"]["annotations"]["mesoskube.io/mesos-name"] == "raw"
    assert kube.get("offers", namespace, offers[0]["id"]["value"])["spec"]["agent"] == node

    s, text, _ = api.call(fid, None, {"type": "REVIVE"})
    assert (s, text) == (400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
    s, text, _ = api.call(fid, "not-the-stream", {"type": "REVIVE"})
    assert s == 400 and "didn't match the stream ID currently associated with framework ID" in text

    second = Subscription(api.port, _info(id={"value": fid}, failover_timeout=60))
    assert second.until("SUBSCRIBED")["subscribed"]["framework_id"]["value"] == fid
    assert second.stream_id != first.stream_id
    # The old connection is closed; the outstanding offer is sent again to the new subscriber.
    while first.next() is not None:
        pass
    assert second.until("OFFERS")["offers"]["offers"][0]["id"] == offers[0]["id"]
    s, _, _ = api.call(fid, first.stream_id, {"type": "REVIVE"})
    assert s == 400
    decline = {
        "type": "DECLINE",
        "decline": {"offer_ids": [offers[0]["id"]], "filters": {"refuse_seconds": 0}},
    }
    assert api.call(fid, second.stream_id, decline)[0] == 202

    # ACCEPT launches a Task; its updates carry a uuid and are re-sent until acknowledged.
    offer = second.until("OFFERS")["offers"]["offers"][0]
    garbled = {"type": "LAUNCH", "launch": {"task_infos": [{"task_id": {"value": "g"}, "resources": "lots"}]}}
    s, text, _ = api.call(
        fid,
        second.stream_id,
        {"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": [garbled]}},
    )
    assert s == 400 and text.startswith("Failed to convert JSON into Call protobuf")  # offer kept
    launch = {
        "type": "LAUNCH",
        "launch": {
            "task_infos": [
                {
                    "name": "t",
                    "task_id": {"value": "t1"},
                    "agent_id": offer["agent_id"],
                    "resources": [
                        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}},
                        {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
                    ],
                    "command": {"value": "sleep 1000"},
                }
            ]
        },
    }
    assert (
        api.call(
            fid,
            second.stream_id,
            {"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": [launch]}},
        )[0]
        == 202
    )
    running = None
    while running is None:
        st = second.until("UPDATE")["update"]["status"]
        if st["state"] == "TASK_RUNNING":
            running = st
    assert running["agent_id"]["value"] == node and base64.b64decode(running["uuid"])
    ack = {
        "type": "ACKNOWLEDGE",
        "acknowledge": {
            "agent_id": running["agent_id"],
            "task_id": running["task_id"],
            "uuid": running["uuid"],
        },
    }
    assert api.call(fid, second.stream_id, ack)[0] == 202
    # Explicit reconciliation: an answer without a uuid (not to be acknowledged).
    rec = {"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "t1"}}]}}
    assert api.call(fid, second.stream_id, rec)[0] == 202
    answer = second.until("UPDATE")["update"]["status"]
    assert answer["state"] == "TASK_RUNNING" and "uuid" not in answer
    assert api.call(fid, second.stream_id, {"type": "KILL", "kill": {"task_id": {"value": "t1"}}})[0] == 202
    killed = second.until("UPDATE")["update"]["status"]
    assert killed["state"] == "TASK_KILLED" and killed["task_id"]["value"] == "t1"
    assert api.call(fid, second.stream_id, {"type": "TEARDOWN"})[0] == 202
    eventually(lambda: not kube.list("frameworks", namespace), timeout=20, what="framework deleted")
    assert api.call(fid, second.stream_id, {"type": "REVIVE"})[0] == 400
    first.close()
    second.close()


def test_dropped_stream_starts_the_failover_timeout(api: Api, kube, namespace) -> None:
    sub = Subscription(api.port, _info("dropper", failover_timeout=3))
    fid = sub.until("SUBSCRIBED")["subscribed"]["framework_id"]["value"]
    stream_id = sub.stream_id
    sub.close()
    phase = lambda: (kube.get("frameworks", namespace, fid).get("status") or {}).get("phase")  # noqa: E731
    eventually(lambda: phase() == "Disconnected", timeout=10, what="Disconnected after the drop")
    s, text, _ = api.call(fid, stream_id, {"type": "REVIVE"})
    assert (s, text) == (403, "Framework is not subscribed")
    eventually(lambda: phase() == "TornDown", timeout=15, what="TornDown after failover_timeout 3s")
    again = Subscription(api.port, _info("dropper", id={"value": fid}))
    assert again.next() == {"type": "ERROR", "error": {"message": "Framework has been removed"}}
    assert again.next() is None
    again.close()


def test_resubscribe_within_the_failover_timeout_keeps_the_framework(api: Api, kube, namespace) -> None:
    sub = Subscription(api.port, _info("flaky", failover_timeout=60))
    fid = sub.until("SUBSCRIBED")["subscribed"]["framework_id"]["value"]
    uid = kube.get("frameworks", namespace, fid)["metadata"]["uid"]
    sub.close()
    phase = lambda: (kube.get("frameworks", namespace, fid).get("status") or {}).get("phase")  # noqa: E731
    eventually(lambda: phase() == "Disconnected", timeout=10, what="Disconnected after the drop")
    again = Subscription(api.port, _info("flaky", id={"value": fid}, failover_timeout=60))
    assert again.until("SUBSCRIBED")["subscribed"]["framework_id"]["value"] == fid
    eventually(lambda: phase() == "Subscribed", timeout=10, what="Subscribed again")
    assert kube.get("frameworks", namespace, fid)["metadata"]["uid"] == uid
    assert api.call(fid, again.stream_id, {"type": "TEARDOWN"})[0] == 202
    again.close()


def test_read_endpoints_in_mesos_json(api: Api, kube, namespace, fake_nodes) -> None:
    nodes = fake_nodes(2, "cpu=4,memory=8Gi,label:zone=a")
    sub = Subscription(api.port, _info("reader"))
    fid = sub.until("SUBSCRIBED")["subscribed"]["framework_id"]["value"]
    sub.until("OFFERS")
    for path in ("/state", "/master/state/", "/state-summary"):
        s, body = api.get(path)
        assert s == 200 and sorted(a["id"] for a in body["slaves"]) == sorted(nodes), path
    s, body = api.get("/master/frameworks/")
    (fw,) = body["frameworks"]
    assert fw["id"] == fid and fw["name"] == "reader" and fw["connected"] and fw["offers"]
    s, body = api.get("/slaves")
    assert body["slaves"][0]["attributes"]["zone"] == "a" and body["slaves"][0]["resources"]["cpus"] == 4
    s, body = api.get("/tasks?order=asc&limit=-1")
    assert s == 200 and body == {"tasks": []}
    assert api.get("/tasks?order=sideways")[0] == 400
    s, body = api.get("/metrics/snapshot")
    assert body["master/slaves_active"] == 2 and body["master/cpus_total"] == 8
    assert api.get("/version")[1]["version"] == "1.11.0"
    assert api.get("/health")[0] == 200
    s, _, headers = api.request("GET", "/master/redirect", headers={})
    assert s == 307 and headers["Location"] == f"//127.0.0.1:{api.port}"
    api.call(fid, sub.stream_id, {"type": "TEARDOWN"})
    sub.close()


def test_standby_redirects_to_the_leader(kube, namespace) -> None:
    from mesoskube.mesosapi.server import MesosApiServer

    port = free_port()
    server = MesosApiServer(
        kube,
        Settings(
            httpPort=port,
            httpHost="127.0.0.1",
            httpAuth="none",
            httpLeader="leader.example:5050",
            namespace=namespace,
        ),
    )
    server.start_in_thread()
    try:
        s, _, headers = Api(port).request("POST", "/api/v1/scheduler", {"type": "SUBSCRIBE"})
        assert s == 307 and headers["Location"] == "//leader.example:5050/api/v1/scheduler"
        s, _, headers = Api(port).request("GET", "/master/state?x=1", headers={})
        assert s == 307 and headers["Location"] == "//leader.example:5050/master/state?x=1"
        assert Api(port).request("GET", "/health", headers={})[0] == 200
    finally:
        server.stop()


def test_a_standby_authenticates_before_it_redirects(kube, namespace) -> None:
    from mesoskube.mesosapi.server import MesosApiServer

    kube.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="fw"))
    )
    port = free_port()
    settings = Settings(
        httpPort=port, httpHost="127.0.0.1", httpLeader="leader.example:5050", namespace=namespace
    )
    server = MesosApiServer(kube, settings).start_in_thread()
    api = Api(port)
    try:
        s, _, headers = api.request("GET", "/state", headers={})
        assert s == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        bearer = {"Authorization": f"Bearer {_token(kube, namespace, 'fw')}"}
        s, _, headers = api.request("GET", "/state", headers=bearer)
        assert s == 307 and headers["Location"] == "//leader.example:5050/state"
        # /redirect and /health need no token (Mesos routes them without an authentication realm).
        assert api.request("GET", "/redirect", headers={})[0] == 307
        assert api.request("GET", "/health", headers={})[0] == 200
    finally:
        server.stop()


def test_a_standby_answers_307_naming_the_lease_holder_and_a_client_following_it_subscribes(
    own_master, kube, namespace, fake_nodes
) -> None:
    fake_nodes(1, "cpu=2,memory=4Gi")
    ports = {"a": free_port(), "b": free_port()}

    def replica(name: str):
        return own_master(
            httpPort=ports[name],
            httpHost="127.0.0.1",
            httpAuth="none",
            leaderElect=True,
            leaseNamespace=namespace,
            identity=f"replica-{name}",
        )

    a = replica("a")
    eventually(
        lambda: a.leading and a.http is not None and a.http.active, timeout=15, what="replica-a leading"
    )
    b = replica("b")
    assert not b.leading
    leader = f"127.0.0.1:{ports['a']}"
    # The holder advertises its address on the Lease, next to its identity.
    annotations = kube.coordination.read_namespaced_lease("mesoskube-master", namespace).metadata.annotations
    assert annotations[ADDRESS_ANNOTATION] == leader and annotations[HOLDER_ANNOTATION] == "replica-a"

    standby = Api(ports["b"])
    body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": _info("follower")}}
    s, _, headers = standby.request("POST", "/master/api/v1/scheduler", body)
    assert s == 307 and headers["Location"] == f"//{leader}/master/api/v1/scheduler"
    s, _, headers = standby.request("GET", "/state?jsonp=x", headers={})
    assert s == 307 and headers["Location"] == f"//{leader}/state?jsonp=x"
    # /redirect goes to the leader's base URL (from either replica); below it is 404, as in Mesos.
    for api in (standby, Api(ports["a"])):
        s, _, headers = api.request("GET", "/master/redirect", headers={})
        assert (s, headers["Location"]) == (307, f"//{leader}")
    assert standby.request("GET", "/redirect/state", headers={})[0] == 404
    assert standby.request("GET", "/health", headers={})[0] == 200
    assert standby.get("/metrics/snapshot")[1]["master/elected"] == 0

    # A client that follows the Location subscribes at the leader and gets its offers.
    target = urlsplit(f"http:{headers['Location']}")
    sub = Subscription(target.port, _info("follower"))
    fid = sub.until("SUBSCRIBED")["subscribed"]["framework_id"]["value"]
    assert sub.until("OFFERS")["offers"]["offers"]
    assert Api(target.port).call(fid, sub.stream_id, {"type": "TEARDOWN"})[0] == 202
    sub.close()

    # The leader goes: the standby takes over, serves, and the Lease names it.
    a.stop()
    eventually(lambda: b.http is not None and b.http.active, timeout=15, what="replica-b serving")
    assert standby.get("/state")[0] == 200
    annotations = kube.coordination.read_namespaced_lease("mesoskube-master", namespace).metadata.annotations
    assert annotations[ADDRESS_ANNOTATION] == f"127.0.0.1:{ports['b']}"


def test_operations_mesoskube_cannot_do_are_dropped_with_operation_error(
    api: Api, kube, namespace, fake_nodes
) -> None:
    fake_nodes(1, "cpu=2,memory=4Gi")
    sub = Subscription(api.port, _info("reserver"))
    fid = sub.until("SUBSCRIBED")["subscribed"]["framework_id"]["value"]
    offer = sub.until("OFFERS")["offers"]["offers"][0]
    cpus = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}, "role": "*"}]
    task = {
        "name": "t",
        "task_id": {"value": "after-reserve"},
        "agent_id": offer["agent_id"],
        "resources": cpus,
        "command": {"value": "sleep 100"},
    }
    operations = [
        {"type": "RESERVE", "id": {"value": "reserve-1"}, "reserve": {"resources": cpus}},
        {"type": "CREATE", "create": {"volumes": []}},  # no id: dropped with a log only, as in Mesos
        {"type": "DESTROY", "id": {"value": "destroy-1"}, "destroy": {"volumes": []}},
        {"type": "LAUNCH", "launch": {"task_infos": [task]}},
    ]
    accept = {"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": operations}}
    assert api.call(fid, sub.stream_id, accept)[0] == 202
    errors, running = {}, None
    while running is None or len(errors) < 2:
        event = sub.next()
        assert event is not None, "stream closed"
        if event["type"] == "UPDATE_OPERATION_STATUS":
            status = event["update_operation_status"]["status"]
            errors[status["operation_id"]["value"]] = status
        elif event["type"] == "UPDATE" and event["update"]["status"]["state"] == "TASK_RUNNING":
            running = event["update"]["status"]
    assert set(errors) == {"reserve-1", "destroy-1"}
    assert errors["reserve-1"]["state"] == "OPERATION_ERROR" and "uuid" not in errors["reserve-1"]
    assert errors["reserve-1"]["message"].startswith("RESERVE operations are not supported by mesoskube")
    assert "persistent volumes" in errors["destroy-1"]["message"]
    # The ACCEPT's LAUNCH still ran: its task is a Task object.
    assert running["task_id"]["value"] == "after-reserve"
    assert api.call(fid, sub.stream_id, {"type": "TEARDOWN"})[0] == 202
    sub.close()


def _token(kube, namespace: str, account: str) -> str:
    return kube.core.create_namespaced_service_account_token(
        account,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status.token


def _grant(kube, namespace: str, account: str, verbs: list[str], resources=("frameworks",)) -> None:
    name = f"{account}-{'-'.join(verbs)}-{'-'.join(resources)}"
    kube.rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name=name),
            rules=[client.V1PolicyRule(api_groups=["mesoskube.io"], resources=list(resources), verbs=verbs)],
        ),
    )
    kube.rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=account, namespace=namespace)],
        ),
    )


def test_bearer_tokens_checked_by_tokenreview_and_rbac(own_master, kube, namespace) -> None:
    port = free_port()
    own_master(httpPort=port, httpHost="127.0.0.1", httpAuth="kubernetes")
    api = Api(port)
    kube.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="fw"))
    )
    sub = {"type": "SUBSCRIBE", "subscribe": {"framework_info": _info("authed")}}
    s, text, headers = api.request("POST", "/api/v1/scheduler", sub)
    assert s == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    s, _, _ = api.request("POST", "/api/v1/scheduler", sub, {**JSON, "Authorization": "Bearer not-a-token"})
    assert s == 401
    before = _token(kube, namespace, "fw")
    s, text, _ = api.request("POST", "/api/v1/scheduler", sub, {**JSON, "Authorization": f"Bearer {before}"})
    assert s == 403 and f"system:serviceaccount:{namespace}:fw' may not create frameworks" in text
    s, text, _ = api.request("GET", "/state", headers={"Authorization": f"Bearer {before}"})
    assert s == 403 and "may not list frameworks" in text
    assert api.request("GET", "/health", headers={})[0] == 200  # probes need no token

    _grant(kube, namespace, "fw", ["create"])
    token = _token(kube, namespace, "fw")  # a new token: verdicts are cached per token for 30 s
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request(
        "POST",
        "/api/v1/scheduler",
        body=json.dumps(sub),
        headers={**JSON, "Authorization": f"Bearer {token}"},
    )
    resp = conn.getresponse()
    assert resp.status == 200
    event = json.loads(resp.read(int(resp.readline())))
    assert event["type"] == "SUBSCRIBED"
    fid = event["subscribed"]["framework_id"]["value"]
    stream_id = resp.getheader("Mesos-Stream-Id")
    # Each call needs the right its write needs on the CR path: REVIVE patches the Framework.
    s, text, _ = api.request(
        "POST",
        "/api/v1/scheduler",
        {"type": "REVIVE", "framework_id": {"value": fid}},
        {**JSON, "Authorization": f"Bearer {token}", "Mesos-Stream-Id": stream_id},
    )
    assert s == 403 and "may not patch frameworks" in text
    # Another identity cannot drive this framework, even with its stream id.
    kube.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="other"))
    )
    _grant(kube, namespace, "other", ["create", "patch"])
    other = _token(kube, namespace, "other")
    s, text, _ = api.request(
        "POST",
        "/api/v1/scheduler",
        {"type": "REVIVE", "framework_id": {"value": fid}},
        {**JSON, "Authorization": f"Bearer {other}", "Mesos-Stream-Id": stream_id},
    )
    assert s == 400 and "does not match principal" in text
    _grant(kube, namespace, "fw", ["delete"])
    token = _token(kube, namespace, "fw")
    s, _, _ = api.request(
        "POST",
        "/api/v1/scheduler",
        {"type": "TEARDOWN", "framework_id": {"value": fid}},
        {**JSON, "Authorization": f"Bearer {token}", "Mesos-Stream-Id": stream_id},
    )
    assert s == 202
    conn.close()


@pytest.mark.timeout(120)
def test_updates_are_resent_until_acknowledged(api: Api, kube, namespace, fake_nodes) -> None:
    fake_nodes(1, "cpu=2,memory=4Gi")
    sub = Subscription(api.port, _info("unacked"), timeout=40)
    fid = sub.until("SUBSCRIBED")["subscribed"]["framework_id"]["value"]
    offer = sub.until("OFFERS")["offers"]["offers"][0]
    task = {
        "name": "t",
        "task_id": {"value": "Task_1"},  # not a DNS label: kept as the label mesoskube.io/mesos-task-id
        "agent_id": offer["agent_id"],
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}],
        "command": {"value": "sleep 1000"},
    }
    accept = {
        "offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}],
    }
    assert api.call(fid, sub.stream_id, {"type": "ACCEPT", "accept": accept})[0] == 202
    first = sub.until("UPDATE")["update"]["status"]
    assert first["state"] == "TASK_RUNNING" and first["task_id"] == {"value": "Task_1"}
    again = sub.until("UPDATE")["update"]["status"]  # not acknowledged: sent again (after 10 s)
    assert again["uuid"] == first["uuid"] and again["state"] == "TASK_RUNNING"
    ack = {"agent_id": again["agent_id"], "task_id": again["task_id"], "uuid": again["uuid"]}
    assert api.call(fid, sub.stream_id, {"type": "ACKNOWLEDGE", "acknowledge": ack})[0] == 202
    (t,) = kube.list("tasks", namespace)
    assert t["spec"]["labels"]["mesoskube.io/mesos-task-id"] == "Task_1"
    assert api.call(fid, sub.stream_id, {"type": "TEARDOWN"})[0] == 202
    sub.close()


def test_cr_and_http_frameworks_share_the_agents(api: Api, kube, namespace, fake_nodes) -> None:
    from tests.cluster.mesos import RawFramework, task

    nodes = fake_nodes(2, "cpu=2,memory=4Gi")
    cr = RawFramework.subscribe(kube, namespace, "cr-fw")
    offers = cr.wait_offers(2)
    held = offers[0]["spec"]["agent"]
    cr.accept(offers[0], [task("whole-node", 2, 4096)])
    cr.decline(offers[1], refuse_seconds=3600)
    cr.wait_task_state("whole-node", "TASK_RUNNING")
    sub = Subscription(api.port, _info("http-fw"))
    fid = sub.until("SUBSCRIBED")["subscribed"]["framework_id"]["value"]
    got = sub.until("OFFERS")["offers"]["offers"]
    assert [o["agent_id"]["value"] for o in got] == [n for n in nodes if n != held]
    _, body = api.get("/frameworks")
    by_id = {f["id"]: f for f in body["frameworks"]}
    assert set(by_id) == {"cr-fw", fid}
    assert [t["id"] for t in by_id["cr-fw"]["tasks"]] == ["whole-node"]
    assert by_id["cr-fw"]["used_resources"]["cpus"] == 2
    _, body = api.get("/slaves")
    used = {a["id"]: a["used_resources"]["cpus"] for a in body["slaves"]}
    assert used[held] == 2
    api.call(fid, sub.stream_id, {"type": "TEARDOWN"})
    sub.close()


def test_protobuf_subscribe_stream_and_calls(api: Api, kube, namespace, fake_nodes) -> None:
    from mesoskube.mesosapi import proto

    (node,) = fake_nodes(1, "cpu=2,memory=4Gi")
    pb = {"Content-Type": "application/x-protobuf", "Accept": "application/x-protobuf"}
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=20)
    body = proto.encode_call({"type": "SUBSCRIBE", "subscribe": {"framework_info": _info("pb")}})
    conn.request("POST", "/api/v1/scheduler", body=body, headers=pb)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/x-protobuf"
    stream_id = resp.getheader("Mesos-Stream-Id")

    def next_event(kind: str) -> dict:
        while True:
            event = proto.decode_event(resp.read(int(resp.readline())))
            if event["type"] == kind:
                return event

    fid = next_event("SUBSCRIBED")["subscribed"]["framework_id"]["value"]
    offer = next_event("OFFERS")["offers"]["offers"][0]
    assert offer["agent_id"]["value"] == node
    decline = {"type": "DECLINE", "framework_id": {"value": fid}, "decline": {"offer_ids": [offer["id"]]}}
    s, _, _ = api.request(
        "POST", "/api/v1/scheduler", proto.encode_call(decline), {**pb, "Mesos-Stream-Id": stream_id}
    )
    assert s == 202
    eventually(
        lambda: (
            not any(
                o["metadata"]["name"] == offer["id"]["value"] and not o["spec"].get("answer")
                for o in kube.list("offers", namespace)
            )
        ),
        timeout=10,
        what="the offer answered",
    )
    teardown = proto.encode_call({"type": "TEARDOWN", "framework_id": {"value": fid}})
    assert api.request("POST", "/api/v1/scheduler", teardown, {**pb, "Mesos-Stream-Id": stream_id})[0] == 202
    conn.close()
