"""The scheduler SDK without an API server: the driver's event thread fed by hand, a fake client
recording every write. Checks callback order, offer batching, rescinds, one patch per answer, and
the status updates the driver synthesises when the master cannot give them."""

from __future__ import annotations

import json
import re
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from mesoskube.api.models import OfferPhase, TaskState
from mesoskube.frameworks.sdk import (
    DriverStatus,
    Offer,
    Scheduler,
    SchedulerDriver,
    StatusSource,
    TaskInfo,
    TaskStatus,
    WritePolicy,
    micro_time,
)
from mesoskube.master.validation import check_named

# ---------------------------------------------------------------------------- fakes


def api_error(status: int, message: str = "") -> ApiException:
    e = ApiException(status=status, reason="fake")
    e.body = json.dumps({"message": message})
    return e


class FakeCoordination:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.exists = False

    def create_namespaced_lease(self, ns, body):
        self.calls.append(("create", body))
        if self.exists:
            raise api_error(409)
        self.exists = True

    def read_namespaced_lease(self, name, ns):
        self.calls.append(("read", name))
        return SimpleNamespace(spec=SimpleNamespace(lease_transitions=2, holder_identity="old-process"))

    def patch_namespaced_lease(self, name, ns, body, _content_type=None):
        self.calls.append(("patch", body, _content_type))

    def delete_namespaced_lease(self, name, ns):
        self.calls.append(("delete", name))


class FakeCore:
    """Pods, read only: `pods` by name, or `fail` (e.g. 403: a framework Role without pod read)."""

    def __init__(self) -> None:
        self.pods: dict[str, SimpleNamespace] = {}
        self.fail: ApiException | None = None

    def read_namespaced_pod(self, name, ns):
        if self.fail is not None:
            raise self.fail
        if name not in self.pods:
            raise api_error(404)
        return self.pods[name]


class FakeKube:
    def __init__(self) -> None:
        self.writes: list[tuple[str, str, str, Any]] = []
        self.fail: dict[tuple[str, str], ApiException] = {}
        # Creates of (plural, name) first raise these, in order; `after` ones once the object is
        # stored (the reply was lost).
        self.create_script: dict[tuple[str, str], list[tuple[BaseException, bool]]] = {}
        self.objects: dict[tuple[str, str], dict] = {}
        self.coordination = FakeCoordination()
        self.core = FakeCore()
        self.lock = threading.Lock()  # an accept's Task creates and deletes go side by side
        self.created = 0
        self.made: list[dict] = []  # every object created, as stored (with its uid)

    def whoami(self) -> str:
        return "system:serviceaccount:ns:fw"

    def create(self, plural, ns, body):
        name = body["metadata"]["name"]
        key = (plural, name)
        with self.lock:
            self.writes.append(("create", plural, name, body))
            script = self.create_script.get(key) or []
            error, after = script.pop(0) if script else (None, False)
            if error is not None and not after:
                raise error
            if key in self.objects:
                raise api_error(409, f'{plural}.mesoskube.io "{name}" already exists')
            self.created += 1
            uid = "uid-1" if plural == "frameworks" else f"{name}-uid-{self.created}"
            obj = {**body, "metadata": {**body["metadata"], "uid": uid, "resourceVersion": "1"}}
            self.objects[key] = obj
            self.made.append(obj)
            if error is not None:
                raise error
            return obj

    def get(self, plural, ns, name):
        if (plural, name) not in self.objects:
            raise api_error(404)
        return self.objects[(plural, name)]

    def patch(self, plural, ns, name, body):
        self.writes.append(("patch", plural, name, body))
        if (plural, name) in self.fail:
            raise self.fail[(plural, name)]
        return self.objects.get((plural, name), {"metadata": {"name": name}})

    def delete(self, plural, ns, name):
        with self.lock:
            self.writes.append(("delete", plural, name, None))
            if self.objects.pop((plural, name), None) is None and plural == "tasks":
                raise api_error(404)

    def done(self, verb: str, plural: str) -> list[str]:
        """The names of the `verb` requests on `plural`, in order."""
        return [w[2] for w in self.writes if w[0] == verb and w[1] == plural]

    def patches(self, plural: str | None = None) -> list[tuple[str, dict]]:
        return [(w[2], w[3]) for w in self.writes if w[0] == "patch" and (plural is None or w[1] == plural)]


class Recorder(Scheduler):
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.statuses: list[TaskStatus] = []
        self.cond = threading.Condition()
        self.on_offers = None

    def _add(self, *e) -> None:
        with self.cond:
            self.events.append(e)
            self.cond.notify_all()

    def registered(self, driver, framework_id):
        self._add("registered", framework_id)

    def reregistered(self, driver):
        self._add("reregistered")

    def disconnected(self, driver):
        self._add("disconnected")

    def resource_offers(self, driver, offers):
        self._add("offers", [o.id for o in offers])
        if self.on_offers:
            self.on_offers(driver, offers)

    def offer_rescinded(self, driver, offer_id):
        self._add("rescinded", offer_id)

    def status_update(self, driver, status):
        self.statuses.append(status)
        self._add("status", status.task_id, status.state.value, status.reason, status.source)

    def error(self, driver, message):
        self._add("error", message)

    def wait(self, n: int, timeout: float = 3.0) -> list[tuple]:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.events) >= n, timeout)
        assert ok, f"expected {n} callbacks, got {self.events}"
        return list(self.events)


def framework(phase: str | None = "Subscribed", **status) -> dict:
    st = {"phase": phase, "frameworkId": "fw-id-1", **status} if phase else {}
    return {"metadata": {"name": "fw", "uid": "uid-1"}, "spec": {"roles": ["*"]}, "status": st}


def offer(name: str, agent: str = "n1", cpus: float = 4, phase: str | None = None, **extra) -> dict:
    status = {"phase": phase} if phase else {}
    status.update(extra)
    return {
        "metadata": {"name": name},
        "spec": {
            "framework": "fw",
            "agent": agent,
            "resources": {"cpus": cpus, "mem": 4096},
            "attributes": {},
        },
        "status": status,
    }


def task(name: str, state: str | None, agent: str = "n1") -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"framework": "fw", "agent": agent, "resources": {"cpus": 1}, "executor": "ex-1"},
        "status": {"state": state, "reason": "R", "message": "m"} if state else {},
    }


def make_rig(**driver_kwargs: Any):
    kube = FakeKube()
    sched = Recorder()
    d = SchedulerDriver(sched, "fw", "ns", kube=kube, offer_batch_window=0.05, **driver_kwargs)  # type: ignore[arg-type]
    d._status = DriverStatus.RUNNING
    t = threading.Thread(target=d._event_loop, daemon=True)
    t.start()
    d._event_thread = t

    def feed(kind: str, event_type: str, obj: Any) -> None:
        d._events.put((kind, (event_type, obj)))

    def quiesce() -> list[tuple]:
        """The callbacks the scheduler got once every event fed so far, and every event those
        queued in turn, is handled (a pending offer batch is flushed by the barrier): waits for
        the driver's thread, not for a time, so "nothing else came" can be asserted."""
        while True:
            handled = threading.Event()
            d.call_soon(handled.set)
            assert handled.wait(10), "the driver's event thread is stuck"
            if d._events.empty():
                return list(sched.events)

    yield SimpleNamespace(driver=d, kube=kube, sched=sched, feed=feed, quiesce=quiesce)
    d._stopped.set()
    d._events.put(("stop", None))
    t.join(2)


@pytest.fixture
def rig():
    """A driver answering with inline tasks (create_tasks=False; `own` creates its Tasks)."""
    yield from make_rig(create_tasks=False)


@pytest.fixture
def own():
    """A driver that creates its own Tasks (create_tasks) and retries writes without sleeping."""
    yield from make_rig(create_tasks=True, writes=WritePolicy(sleep=lambda s: None))


def subscribe(rig) -> None:
    rig.feed("framework", "MODIFIED", framework())
    rig.sched.wait(1)


# ---------------------------------------------------------------------------- callbacks


def test_offers_wait_for_registration_then_arrive_in_one_batch(rig):
    rig.feed("offer", "ADDED", offer("o1"))
    rig.feed("offer", "ADDED", offer("o2", agent="n2"))
    assert rig.quiesce() == []
    rig.feed("framework", "MODIFIED", framework())
    assert rig.sched.wait(2) == [("registered", "fw-id-1"), ("offers", ["o1", "o2"])]
    assert rig.driver.framework_id == "fw-id-1"
    assert [o.id for o in rig.driver.outstanding_offers()] == ["o1", "o2"]


def test_offers_within_the_window_batch_and_other_events_keep_their_order(rig):
    # A window no machine can miss: the batch is flushed by the events that follow it, not by
    # time (it was 50 ms, and a loaded machine split o2 and o3).
    rig.driver.offer_batch_window = 600
    subscribe(rig)
    rig.feed("offer", "ADDED", offer("o1"))
    rig.feed("task", "ADDED", task("t1", "TASK_RUNNING"))
    rig.feed("offer", "ADDED", offer("o2"))
    rig.feed("offer", "ADDED", offer("o3"))
    events = rig.quiesce()[1:]
    assert events[0] == ("offers", ["o1"])  # flushed before the status update that followed it
    assert events[1][:3] == ("status", "t1", "TASK_RUNNING")
    assert events[2] == ("offers", ["o2", "o3"])


def test_rescinds(rig):
    subscribe(rig)
    rig.feed("offer", "ADDED", offer("o1"))
    rig.sched.wait(2)
    rig.feed("offer", "MODIFIED", offer("o1", phase="Rescinded", reason="REASON_AGENT_REMOVED"))
    rig.feed("offer", "DELETED", offer("o1", phase="Rescinded"))
    # A deletion of an unanswered offer is a rescind as well.
    rig.feed("offer", "ADDED", offer("o2"))
    rig.sched.wait(4)
    rig.feed("offer", "DELETED", offer("o2"))
    # An offer rescinded while still in a pending batch is never delivered nor rescinded.
    rig.feed("offer", "ADDED", offer("o3"))
    rig.feed("offer", "MODIFIED", offer("o3", phase="Expired"))
    events = rig.quiesce()[1:]
    assert events == [("offers", ["o1"]), ("rescinded", "o1"), ("offers", ["o2"]), ("rescinded", "o2")]
    assert rig.driver.stats.offers_rescinded == 2


def test_answered_offers_are_not_rescinded_and_answers_are_one_patch_each(rig):
    subscribe(rig)
    rig.feed("offer", "ADDED", offer("o1"))
    rig.feed("offer", "ADDED", offer("o2"))
    rig.sched.wait(2)
    t = TaskInfo(name="t1", resources={"cpus": 1, "mem": 128}, runSeconds=2)
    rig.driver.accept("o1", [t, {"name": "t2", "resources": {"cpus": 1}}], filters={"refuseSeconds": 1})
    rig.driver.accept("o1", [t])  # a second answer is ignored
    rig.driver.decline("o2", refuse_seconds=30)
    patches = rig.kube.patches("offers")
    assert len(patches) == 2
    name, body = patches[0]
    answer = body["spec"]["answer"]
    assert name == "o1" and answer["type"] == "Accept" and answer["filters"] == {"refuseSeconds": 1}
    assert [x["name"] for x in answer["tasks"]] == ["t1", "t2"]
    assert answer["tasks"][0]["resources"]["cpus"] == 1 and answer["tasks"][0]["runSeconds"] == 2
    assert patches[1] == ("o2", {"spec": {"answer": {"type": "Decline", "filters": {"refuseSeconds": 30.0}}}})
    rig.driver.decline("o3")  # never offered to us, but the driver does not guess: it patches
    assert rig.kube.patches("offers")[2] == ("o3", {"spec": {"answer": {"type": "Decline"}}})
    rig.feed("offer", "DELETED", offer("o1"))
    assert rig.quiesce()[-1] == ("offers", ["o1", "o2"])
    assert rig.driver.stats.accepts == 1 and rig.driver.stats.declines == 2


def test_accepting_a_rescinded_offer_gives_task_lost_without_a_patch(rig):
    subscribe(rig)
    rig.feed("offer", "ADDED", offer("o1"))
    rig.sched.wait(2)
    rig.feed("offer", "MODIFIED", offer("o1", phase="Rescinded"))
    rig.sched.wait(3)
    rig.driver.accept("o1", [TaskInfo(name="t1", resources={"cpus": 1})])
    ev = rig.sched.wait(4)[-1]
    assert ev == ("status", "t1", "TASK_LOST", "REASON_INVALID_OFFERS", StatusSource.DRIVER)
    assert rig.kube.patches("offers") == []


def test_partition_aware_frameworks_get_task_dropped(rig):
    rig.driver.capabilities = ["PARTITION_AWARE"]
    subscribe(rig)
    rig.kube.fail[("offers", "o9")] = api_error(404)
    rig.driver.accept("o9", [TaskInfo(name="t1", resources={"cpus": 1})])
    assert rig.sched.wait(2)[-1][:4] == ("status", "t1", "TASK_DROPPED", "REASON_INVALID_OFFERS")


def test_an_accept_the_api_server_refuses_is_task_error_and_the_offer_is_declined(rig):
    subscribe(rig)
    rig.kube.fail[("offers", "o1")] = api_error(422, "spec.answer.tasks[0].name: Invalid value")
    rig.driver.accept("o1", [TaskInfo(name="t1", resources={"cpus": 1})])
    ev = rig.sched.wait(2)[-1]
    assert ev[:4] == ("status", "t1", "TASK_ERROR", "REASON_TASK_INVALID")
    assert [b["spec"]["answer"]["type"] for _, b in rig.kube.patches("offers")] == ["Accept", "Decline"]


def test_an_answer_the_master_refused_after_a_rescind_race_gives_task_lost(rig):
    subscribe(rig)
    rig.feed("offer", "ADDED", offer("o1"))
    rig.sched.wait(2)
    rig.driver.accept("o1", [TaskInfo(name="t1", resources={"cpus": 1})])
    refused = offer("o1", phase="Rescinded", answerRefused=True, message="answer refused: rescinded")
    refused["spec"]["answer"] = {"type": "Accept"}
    rig.feed("offer", "MODIFIED", refused)
    rig.feed("offer", "MODIFIED", refused)  # only once
    events = rig.quiesce()
    assert events[-1] == ("status", "t1", "TASK_LOST", "REASON_INVALID_OFFERS", StatusSource.DRIVER)
    assert sum(1 for e in events if e[0] == "status") == 1


def test_task_updates_only_on_change_and_a_vanished_task_is_lost(rig):
    subscribe(rig)
    rig.feed("task", "ADDED", task("t1", None))  # no state yet: the master's way of saying STAGING
    rig.feed("task", "MODIFIED", task("t1", "TASK_STAGING"))
    rig.feed("task", "MODIFIED", task("t1", "TASK_STAGING"))
    rig.feed("task", "MODIFIED", task("t1", "TASK_RUNNING"))
    rig.feed("task", "ADDED", task("t2", "TASK_RUNNING"))
    rig.feed("task", "DELETED", task("t2", "TASK_RUNNING"))
    rig.feed("task", "ADDED", task("t3", "TASK_FINISHED"))
    rig.feed("task", "DELETED", task("t3", "TASK_FINISHED"))
    events = [e[1:4] for e in rig.quiesce() if e[0] == "status"]
    assert events == [
        ("t1", "TASK_STAGING", None),
        ("t1", "TASK_RUNNING", "R"),
        ("t2", "TASK_RUNNING", "R"),
        ("t2", "TASK_LOST", "REASON_TASK_UNKNOWN"),
        ("t3", "TASK_FINISHED", "R"),
    ]


def test_a_relist_diffs_against_what_was_known(rig):
    subscribe(rig)
    rig.feed("offer", "SYNC", [offer("o1"), offer("o2")])
    rig.feed("task", "SYNC", [task("t1", "TASK_RUNNING"), task("t2", "TASK_RUNNING")])
    rig.sched.wait(4)
    # After a 410 the watch re-lists: o1 and t2 are gone, t1 moved on.
    rig.feed("offer", "SYNC", [offer("o2")])
    rig.feed("task", "SYNC", [task("t1", "TASK_FINISHED")])
    events = rig.quiesce()[4:]
    assert ("rescinded", "o1") in events
    assert [e[1:3] for e in events if e[0] == "status"] == [("t2", "TASK_LOST"), ("t1", "TASK_FINISHED")]


def test_reconciliation_answers_arrive_once_as_status_updates(rig):
    subscribe(rig)
    rig.driver.reconcile_tasks(["t1", "ghost"])
    rig.driver.reconcile_tasks()
    assert [b["spec"]["reconcile"] for _, b in rig.kube.patches("frameworks")] == [
        {"id": 1, "taskIds": ["t1", "ghost"]},
        {"id": 2, "taskIds": []},
    ]
    answered = framework(
        observedReconcile=1,
        reconciled=[
            {"taskId": "t1", "state": "TASK_RUNNING"},
            {"taskId": "ghost", "state": "TASK_LOST", "reason": "REASON_RECONCILIATION"},
        ],
    )
    rig.feed("framework", "MODIFIED", answered)
    rig.feed("framework", "MODIFIED", answered)
    events = [e[1:4] for e in rig.quiesce() if e[0] == "status"]
    assert events == [
        ("t1", "TASK_RUNNING", "REASON_RECONCILIATION"),
        ("ghost", "TASK_LOST", "REASON_RECONCILIATION"),
    ]


def test_revive_suppress_and_kill_are_single_patches(rig):
    subscribe(rig)
    rig.driver._revive = 3  # as read from the Framework at subscription
    rig.driver.revive()
    rig.driver.suppress()
    rig.driver.kill_task("t1")
    assert rig.kube.patches("frameworks") == [
        ("fw", {"spec": {"revive": 4, "suppress": False}}),
        ("fw", {"spec": {"suppress": True}}),
    ]
    assert rig.kube.patches("tasks") == [("t1", {"spec": {"kill": True}})]
    rig.kube.fail[("tasks", "gone")] = api_error(404)
    rig.driver.kill_task("gone")
    assert rig.sched.wait(2)[-1][:4] == ("status", "gone", "TASK_LOST", "REASON_RECONCILIATION")


def test_disconnect_reregister_and_teardown(rig):
    subscribe(rig)
    rig.feed("framework", "MODIFIED", framework("Disconnected"))
    rig.feed("framework", "MODIFIED", framework("Subscribed"))
    rig.feed("framework", "MODIFIED", framework("TornDown"))
    events = rig.sched.wait(4)
    assert events[1:] == [("disconnected",), ("reregistered",), ("error", "Framework has been removed")]
    assert rig.driver.join(2) is DriverStatus.ABORTED


def test_timers_and_calls_run_on_the_event_thread_in_order(rig):
    seen: list[tuple[str, str]] = []
    late = threading.Event()
    rig.driver.call_later(0.1, lambda: (seen.append(("late", threading.current_thread().name)), late.set()))
    rig.driver.call_soon(lambda: seen.append(("soon", threading.current_thread().name)))
    cancelled = rig.driver.call_later(0.05, lambda: seen.append(("cancelled", "")))
    cancelled.cancel()
    assert late.wait(10)  # the cancelled one was due first: had it run, it would be in `seen`
    assert [s[0] for s in seen] == ["soon", "late"]
    assert all(s[1] == rig.driver._event_thread.name for s in seen)


def test_offers_a_failing_callback_left_unanswered_are_declined(rig):
    def boom(driver, offers):
        driver.accept(offers[0].id, [TaskInfo(name="t1", resources={"cpus": 1})])
        raise RuntimeError("scheduler bug")

    rig.sched.on_offers = boom
    subscribe(rig)
    rig.feed("offer", "ADDED", offer("o1"))
    rig.feed("offer", "ADDED", offer("o2"))
    rig.sched.wait(2)

    def answered() -> dict[str, str]:
        return {n: b["spec"]["answer"]["type"] for n, b in rig.kube.patches("offers")}

    # Both answers are written by the driver's threads: wait for them rather than for a time.
    deadline = time.monotonic() + 10
    while len(answered()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert answered() == {"o1": "Accept", "o2": "Decline"}


# ---------------------------------------------------------------------------- create_tasks


def offered_to(rig, name: str = "o1") -> None:
    subscribe(rig)
    o = offer(name)
    o["spec"]["role"] = "web"
    rig.feed("offer", "ADDED", o)
    rig.sched.wait(2)


def driver_statuses(rig) -> dict[str, TaskStatus]:
    rig.quiesce()
    return {s.task_id: s for s in rig.sched.statuses}


def test_create_tasks_an_accept_creates_its_tasks_as_the_master_would_then_answers_with_their_names(own):
    own.driver.tolerations = [{"key": "dedicated", "operator": "Exists"}]
    offered_to(own)
    # The Framework as registered with them: the Tasks carry the Framework's own tolerations.
    own.driver._framework_obj.setdefault("spec", {})["tolerations"] = own.driver.tolerations
    t1 = TaskInfo(name="t1", resources={"cpus": 1, "mem": 128}, runSeconds=2, labels={"app": "x"})
    own.driver.accept("o1", [t1, {"name": "t2", "resources": {"cpus": 1}}], filters={"refuseSeconds": 1})
    # The creates (side by side), then the one answer.
    assert sorted(own.kube.done("create", "tasks")) == ["t1", "t2"] and len(own.kube.writes) == 3
    creates = {w[2]: w[3] for w in own.kube.writes if w[0] == "create"}
    owner = {
        "apiVersion": "mesoskube.io/v1alpha1",
        "kind": "Framework",
        "name": "fw",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    # Exactly what the master builds: no label of the master's (made-by-master, refused, task id).
    assert creates["t1"] == {
        "apiVersion": "mesoskube.io/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": "t1",
            "namespace": "ns",
            "labels": {"mesoskube.io/framework": "fw", "mesoskube.io/agent-name": "n1"},
            "ownerReferences": [owner],
        },
        "spec": {
            "framework": "fw",
            "role": "web",
            "agent": "n1",
            "offer": "o1",
            "resources": {"cpus": 1.0, "mem": 128.0},
            "container": {},
            "labels": {"app": "x"},
            "runSeconds": 2.0,
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        },
    }
    assert creates["t2"]["metadata"]["ownerReferences"] == [owner]
    assert creates["t2"]["spec"]["resources"] == {"cpus": 1.0} and creates["t2"]["spec"]["offer"] == "o1"
    assert own.kube.writes[-1][:3] == ("patch", "offers", "o1")
    assert own.kube.patches("offers") == [
        (
            "o1",
            {
                "spec": {
                    "answer": {"type": "Accept", "taskNames": ["t1", "t2"], "filters": {"refuseSeconds": 1}}
                }
            },
        )
    ]
    stats = own.driver.stats
    assert (stats.task_creates, stats.answers, stats.accepts) == (2, 1, 1)
    assert own.driver.outstanding_offers() == []
    # The Tasks' own watch events are the scheduler's as ever (the master's STAGING, no driver word).
    own.feed("task", "ADDED", own.kube.objects[("tasks", "t1")])
    assert [(s.task_id, s.state, s.source) for s in driver_statuses(own).values()] == [
        ("t1", TaskState.STAGING, StatusSource.MASTER)
    ]


def test_create_tasks_the_tasks_made_pass_the_masters_check_of_an_accept_by_name(own):
    own.driver.tolerations = [{"key": "dedicated", "operator": "Exists"}]
    offered_to(own)
    # The Framework as registered with them: the Tasks carry the Framework's own tolerations.
    own.driver._framework_obj.setdefault("spec", {})["tolerations"] = own.driver.tolerations
    own.driver.accept(
        "o1", [TaskInfo(name="t1", resources={"cpus": 1}), TaskInfo(name="t2", resources={"cpus": 2})]
    )
    o = offer("o1")
    o["metadata"]["namespace"] = "ns"
    o["spec"]["role"] = "web"
    made = {n: own.kube.objects[("tasks", n)] for n in ("t1", "t2")}
    verdict = check_named(o, "uid-1", own.driver.tolerations, made)
    assert verdict.ok, verdict.message


def test_create_tasks_a_task_id_taken_by_another_offers_task_rolls_the_accept_back(own):
    offered_to(own)
    own.kube.objects[("tasks", "t2")] = {
        "metadata": {"name": "t2", "uid": "old"},
        "spec": {"framework": "fw", "offer": "o0", "agent": "n1"},
        "status": {"state": "TASK_FINISHED"},
    }
    own.driver.accept("o1", [TaskInfo(name=n, resources={"cpus": 1}) for n in ("t1", "t2", "t3")])
    assert sorted(own.kube.done("create", "tasks")) == ["t1", "t2", "t3"]
    assert sorted(own.kube.done("delete", "tasks")) == ["t1", "t3"]  # ours; the holder of t2 stays
    assert own.kube.objects[("tasks", "t2")]["metadata"]["uid"] == "old"
    assert own.kube.patches("offers") == [("o1", {"spec": {"answer": {"type": "Decline"}}})]
    assert own.kube.writes[-1][:3] == ("patch", "offers", "o1")  # declined once rolled back
    got = driver_statuses(own)
    assert sorted(got) == ["t1", "t2", "t3"]
    for s in got.values():
        assert (s.state, s.reason, s.source) == (TaskState.ERROR, "REASON_TASK_INVALID", StatusSource.DRIVER)
    assert got["t2"].message == (
        "task id t2 is already used in namespace ns: task ids are unique in a namespace, finished "
        "tasks included; launch it under another name"
    )
    for n in ("t1", "t3"):
        assert "o1 refused" in got[n].message and "task id t2 is already used" in got[n].message
    stats = own.driver.stats
    assert (stats.task_creates, stats.accepts, stats.declines) == (3, 0, 1)
    assert own.driver.outstanding_offers() == []
    # The watch's view of the rolled-back Tasks (created, then deleted) is not the scheduler's.
    n = len(own.sched.events)
    for body in own.kube.made:
        own.feed("task", "ADDED", body)
        own.feed("task", "DELETED", body)
    assert own.quiesce()[n:] == []


@pytest.mark.parametrize(
    "status, message",
    [
        (422, 'Task.mesoskube.io "t2" is invalid: spec.container.image: Invalid value: ""'),
        (403, 'tasks.mesoskube.io "t2" is forbidden: ValidatingAdmissionPolicy denied request'),
    ],
)
def test_create_tasks_a_create_the_api_server_refuses_rolls_the_accept_back(own, status, message):
    offered_to(own)
    own.kube.create_script[("tasks", "t2")] = [(api_error(status, message), False)]
    own.driver.accept(
        "o1", [TaskInfo(name="t1", resources={"cpus": 1}), TaskInfo(name="t2", resources={"cpus": 1})]
    )
    assert own.kube.done("create", "tasks").count("t2") == 1  # an answer: not retried
    assert own.kube.done("delete", "tasks") == ["t1"]
    assert [b["spec"]["answer"] for _, b in own.kube.patches("offers")] == [{"type": "Decline"}]
    got = driver_statuses(own)
    assert {n: (s.state, s.reason) for n, s in got.items()} == {
        "t1": (TaskState.ERROR, "REASON_TASK_INVALID"),
        "t2": (TaskState.ERROR, "REASON_TASK_INVALID"),
    }
    assert got["t2"].message == message
    assert message in got["t1"].message and "task t2" in got["t1"].message


@pytest.mark.parametrize("stored", [False, True], ids=["not-stored", "reply-lost"])
def test_create_tasks_a_transient_error_on_a_create_is_retried(own, stored):
    """500, then the retry: created (or, when the first attempt was stored and only its reply lost,
    the retry's 409 shows our own Task of this offer: created all the same)."""
    offered_to(own)
    own.kube.create_script[("tasks", "t1")] = [(api_error(500), stored)]
    own.driver.accept("o1", [TaskInfo(name="t1", resources={"cpus": 1})])
    assert own.kube.done("create", "tasks") == ["t1", "t1"]
    assert own.kube.done("delete", "tasks") == []
    assert own.kube.patches("offers") == [
        ("o1", {"spec": {"answer": {"type": "Accept", "taskNames": ["t1"]}}})
    ]
    assert own.driver.stats.accepts == 1 and own.driver.stats.task_creates == 1
    assert driver_statuses(own) == {}


def test_create_tasks_an_offer_the_driver_does_not_hold_is_accepted_inline(own):
    subscribe(own)
    own.driver.accept("o9", [TaskInfo(name="t1", resources={"cpus": 1})])  # role and agent unknown
    assert own.kube.done("create", "tasks") == []
    assert [b["spec"]["answer"]["tasks"][0]["name"] for _, b in own.kube.patches("offers")] == ["t1"]


def test_without_create_tasks_an_accept_is_one_patch_with_its_tasks_inline(rig):
    offered_to(rig)
    t1 = TaskInfo(name="t1", resources={"cpus": 1})
    rig.driver.accept("o1", [t1])
    inline = [t1.model_dump(mode="json", exclude_none=True)]
    assert rig.kube.writes == [
        ("patch", "offers", "o1", {"spec": {"answer": {"type": "Accept", "tasks": inline}}})
    ]
    assert rig.driver.stats.task_creates == 0 and rig.driver.stats.accepts == 1


# ---------------------------------------------------------------------------- subscribe, lease, stop


def test_subscribe_creates_the_lease_first_then_the_framework():
    kube = FakeKube()
    d = SchedulerDriver(Recorder(), "fw", "ns", roles=["a"], kube=kube, failover_timeout=30)  # type: ignore[arg-type]
    d._renew_lease(first=True)
    d._subscribe()
    kind, body = kube.coordination.calls[0]
    assert kind == "create" and body["metadata"]["labels"] == {"mesoskube.io/framework": "fw"}
    spec = body["spec"]
    assert spec["holderIdentity"] == d.identity and spec["leaseDurationSeconds"] == 15
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", spec["renewTime"])
    created = kube.objects[("frameworks", "fw")]
    assert created["spec"] == {
        "roles": ["a"],
        "failoverTimeoutSeconds": 30.0,
        "capabilities": [],
        "principal": "system:serviceaccount:ns:fw",
    }
    # Renewal: one JSON patch that also adds the owner reference (once), guarded by a test op.
    d._renew_lease()
    d._renew_lease()
    (_, ops1, ct1), (_, ops2, _) = [c for c in kube.coordination.calls if c[0] == "patch"]
    assert ct1 == "application/json-patch+json"
    assert ops1[0] == {"op": "test", "path": "/spec/holderIdentity", "value": d.identity}
    assert ops1[2]["path"] == "/metadata/ownerReferences" and ops1[2]["value"][0]["uid"] == "uid-1"
    assert len(ops2) == 2


def test_a_second_process_reregisters_and_takes_the_lease_over():
    kube = FakeKube()
    kube.objects[("frameworks", "fw")] = {
        "metadata": {"name": "fw", "uid": "uid-0"},
        "spec": {"roles": ["*"], "failoverTimeoutSeconds": 60.0, "capabilities": [], "revive": 7},
        "status": {"phase": "Disconnected"},
    }
    kube.coordination.exists = True
    d = SchedulerDriver(Recorder(), "fw", "ns", kube=kube, failover_timeout=60)  # type: ignore[arg-type]
    d._renew_lease(first=True)
    d._subscribe()
    patch = next(c for c in kube.coordination.calls if c[0] == "patch")
    assert patch[1]["spec"]["holderIdentity"] == d.identity and patch[1]["spec"]["leaseTransitions"] == 3
    assert kube.patches("frameworks") == []  # nothing to change
    assert d._revive == 7 and d._framework_uid == "uid-0"
    with pytest.raises(ValueError, match="MULTI_ROLE"):
        SchedulerDriver(Recorder(), "fw", "ns", roles=["other"], kube=kube)._subscribe()  # type: ignore[arg-type]


def test_a_torn_down_framework_of_the_same_name_is_replaced():
    kube = FakeKube()
    kube.objects[("frameworks", "fw")] = {
        "metadata": {"name": "fw", "uid": "old"},
        "status": {"phase": "TornDown"},
    }
    d = SchedulerDriver(Recorder(), "fw", "ns", kube=kube)  # type: ignore[arg-type]
    d._subscribe()
    assert ("delete", "frameworks", "fw", None) in kube.writes
    assert kube.objects[("frameworks", "fw")]["metadata"]["uid"] == "uid-1"


def test_stop_tears_down_and_failover_does_not(rig):
    rig.driver.stop(failover=True)
    assert rig.driver.status is DriverStatus.STOPPED
    assert not [w for w in rig.kube.writes if w[0] == "delete"]
    kube = FakeKube()
    d = SchedulerDriver(Recorder(), "fw", "ns", kube=kube)  # type: ignore[arg-type]
    d._status = DriverStatus.RUNNING
    assert d.stop() is DriverStatus.STOPPED and d.join(0) is DriverStatus.STOPPED
    assert ("delete", "frameworks", "fw", None) in kube.writes
    assert ("delete", "fw") in kube.coordination.calls
    # Calls after stop do nothing.
    assert d.revive() is DriverStatus.STOPPED and kube.patches() == []


# ---------------------------------------------------------------------------- value objects


def test_offer_and_status_from_objects():
    o = Offer.from_object(offer("o1", cpus=2.5, phase="Outstanding"))
    assert o.id == "o1" and o.agent_id == "n1" and o.resources.cpus == 2.5 and o.resources.mem == 4096
    assert o.phase is OfferPhase.OUTSTANDING and o.expires_at is None and "o1" in str(o)
    s = TaskStatus.from_task(task("t1", "TASK_FAILED"))
    assert s is not None and s.state is TaskState.FAILED and s.is_terminal and s.is_failure
    assert s.agent_id == "n1" and s.executor_id == "ex-1" and s.source is StatusSource.MASTER
    staging = TaskStatus.from_task(task("t1", None))
    assert staging.state is TaskState.STAGING and staging.reason is None
    assert not TaskStatus(task_id="x", state=TaskState.KILLED).is_failure


def test_a_refused_launch_reported_on_a_task_of_its_own_is_a_status_of_the_refused_id():
    """The master's TASK_ERROR for a taken task id lives on another object; the label names the id."""
    refusal = task("t1-dup-0123456789", "TASK_ERROR")
    refusal["metadata"]["labels"] = {"mesoskube.io/mesos-task-id": "t1"}
    s = TaskStatus.from_task(refusal)
    assert s.task_id == "t1" and s.state is TaskState.ERROR


def test_micro_time_has_six_fraction_digits_even_on_whole_seconds():
    assert micro_time(0) == "1970-01-01T00:00:00.000000Z"


def test_create_tasks_is_the_default_and_the_environment_can_turn_it_off(monkeypatch):
    from mesoskube.frameworks.sdk.driver import create_tasks_default

    monkeypatch.delenv("MESOSKUBE_CREATE_TASKS", raising=False)
    assert create_tasks_default() is True
    monkeypatch.setenv("MESOSKUBE_CREATE_TASKS", "false")
    assert create_tasks_default() is False
