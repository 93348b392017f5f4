"""The SDK's writes retry transient errors with exponential backoff (no sleeps: the sleeper and the
clock are fakes); an answer the API never stored is never reported as answered; a retry that meets
its own earlier, applied attempt counts as success."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from mesoskube.frameworks.sdk import DriverStatus, SchedulerDriver, TaskInfo, TaskState
from mesoskube.frameworks.sdk.retry import APPLIED, WritePolicy, is_transient
from tests.unit.test_sdk import FakeKube, Recorder, api_error, offer, subscribe


class FakeTime:
    """A clock that only the fake sleeper moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def policy(self, deadline: float = 120.0) -> WritePolicy:
        return WritePolicy(sleep=self.sleep, clock=lambda: self.now, deadline=deadline)


def reset() -> urllib3.exceptions.ProtocolError:
    return urllib3.exceptions.ProtocolError(
        "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")
    )


def flaky(errors: list[BaseException], result: object = "ok"):
    calls = []

    def fn():
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def policy_not_ready() -> ApiException:
    e = ApiException(status=422, reason="Unprocessable Entity")
    e.body = (
        '{"kind":"Status","message":"frameworks.mesoskube.io \\"fw\\" is forbidden: '
        "ValidatingAdmissionPolicy 'rbac-mesoskube-role-access' denied request: failed to configure "
        "policy: failed to find resource referenced by paramKind: 'mesoskube.io/v1alpha1, "
        'Kind=MesosRole\'","code":422}'
    )
    return e


def namespace_lifecycle_not_ready() -> ApiException:
    e = ApiException(status=403, reason="Forbidden")
    e.body = (
        '{"kind":"Status","message":"offers.mesoskube.io \\"o\\" is forbidden: '
        'not yet ready to handle request"}'
    )
    return e


@pytest.mark.parametrize(
    "error",
    [
        reset(),
        ConnectionResetError(),
        TimeoutError(),
        api_error(429),
        api_error(500),
        api_error(503),
        ApiException(status=0, reason="no response"),
        urllib3.exceptions.ReadTimeoutError(None, "/", "timed out"),
        # Seen after a kube-apiserver restart, for seconds, on every Framework create and answer.
        policy_not_ready(),
        namespace_lifecycle_not_ready(),
    ],
)
def test_transient_errors_are_retried_with_growing_backoff(error):
    t = FakeTime()
    fn, calls = flaky([error, error, error, error])
    assert t.policy().call(fn, "write") == "ok"
    assert len(calls) == 5
    assert len(t.sleeps) == 4
    assert all(b > a for a, b in zip(t.sleeps, t.sleeps[1:], strict=False))  # exponential, jitter < step
    assert 0.1 <= t.sleeps[0] < 0.2


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_answers_from_the_api_server_are_not_retried(status):
    t = FakeTime()
    fn, calls = flaky([api_error(status)])
    with pytest.raises(ApiException):
        t.policy().call(fn, "write")
    assert len(calls) == 1 and t.sleeps == []
    assert not is_transient(api_error(status))


def test_backoff_is_capped_and_the_last_error_is_raised_at_the_deadline():
    t = FakeTime()
    fn, _ = flaky([reset() for _ in range(1000)])
    with pytest.raises(urllib3.exceptions.ProtocolError):
        t.policy(deadline=60).call(fn, "write")
    assert max(t.sleeps) <= 5.05
    assert 60 <= t.now < 66


def test_a_retry_meeting_its_own_applied_create_counts_as_success():
    t = FakeTime()
    fn, _ = flaky([reset(), api_error(409)])
    assert t.policy().call(fn, "create", applied=lambda e: e.status == 409) is APPLIED


def test_a_conflict_on_the_first_attempt_is_not_ours():
    t = FakeTime()
    fn, _ = flaky([api_error(409)])
    with pytest.raises(ApiException):
        t.policy().call(fn, "create", applied=lambda e: e.status == 409)


def test_give_up_stops_retrying():
    t = FakeTime()
    fn, calls = flaky([reset() for _ in range(100)])
    with pytest.raises(urllib3.exceptions.ProtocolError):
        t.policy().call(fn, "write", give_up=lambda: len(calls) >= 3)
    assert len(calls) == 3


# ---------------------------------------------------------------------------- the driver


class ScriptedKube(FakeKube):
    """FakeKube whose patches of (plural, name) first raise the scripted errors, in order; an
    error marked `after` is raised after the write took effect (the reply was lost)."""

    def __init__(self) -> None:
        super().__init__()
        self.script: dict[tuple[str, str], list[tuple[BaseException, bool]]] = {}
        self.stored: list[tuple[str, str, dict]] = []
        self.on_stored: Callable[[str, str, dict], None] = lambda plural, name, body: None

    def patch(self, plural, ns, name, body):
        self.writes.append(("patch", plural, name, body))
        script = self.script.get((plural, name)) or []
        if script:
            error, after = script.pop(0)
            if after:
                self.stored.append((plural, name, body))
                self.on_stored(plural, name, body)
            raise error
        self.stored.append((plural, name, body))
        self.on_stored(plural, name, body)
        return {"metadata": {"name": name}}


def make_rig(**driver_kwargs):
    kube = ScriptedKube()
    t = FakeTime()
    sched = Recorder()
    d = SchedulerDriver(
        sched, "fw", "ns", kube=kube, offer_batch_window=0.0, writes=t.policy(deadline=30), **driver_kwargs
    )  # type: ignore[arg-type]
    d._status = DriverStatus.RUNNING
    th = threading.Thread(target=d._event_loop, daemon=True)
    th.start()
    d._event_thread = th

    def feed(kind, event_type, obj):
        d._events.put((kind, (event_type, obj)))

    def quiesce() -> list[tuple]:
        drained = threading.Event()
        d.call_soon(drained.set)  # runs after any status update already queued
        assert drained.wait(3)
        return list(sched.events)

    yield SimpleNamespace(driver=d, kube=kube, sched=sched, feed=feed, time=t, quiesce=quiesce)
    d._stopped.set()
    d._events.put(("stop", None))
    th.join(2)


@pytest.fixture
def rig():
    """Inline tasks (create_tasks=False); `own` creates its Tasks."""
    yield from make_rig(create_tasks=False)


@pytest.fixture
def own():
    yield from make_rig(create_tasks=True)


def offered(rig, name: str = "o1") -> None:
    subscribe(rig)
    rig.feed("offer", "ADDED", offer(name))
    rig.sched.wait(2)


def test_an_accept_through_connection_resets_is_stored_once_and_counted_once(rig):
    offered(rig)
    rig.kube.script[("offers", "o1")] = [(reset(), False), (api_error(503), False)]
    rig.driver.accept("o1", [TaskInfo(name="t1", resources={"cpus": 1})])
    assert [s[1] for s in rig.kube.stored] == ["o1"]
    assert rig.driver.stats.accepts == 1 and rig.driver.stats.answers == 1
    assert rig.driver.outstanding_offers() == []
    assert len(rig.time.sleeps) == 2


def test_an_answer_the_api_never_stored_is_not_reported_as_answered(rig):
    offered(rig)
    rig.kube.script[("offers", "o1")] = [(reset(), False) for _ in range(1000)]
    rig.driver.accept("o1", [TaskInfo(name="t1", resources={"cpus": 1})])
    assert rig.kube.stored == []
    assert rig.driver.stats.answers == 0 and rig.driver.stats.accepts == 0
    assert [o.id for o in rig.driver.outstanding_offers()] == ["o1"]  # still the scheduler's to answer
    ev = rig.sched.wait(3)[-1]
    assert ev[:4] == ("status", "t1", "TASK_LOST", "REASON_MASTER_DISCONNECTED")
    # ... and it may be answered again once the API server is back.
    rig.kube.script.clear()
    rig.driver.decline("o1")
    assert rig.kube.stored == [("offers", "o1", {"spec": {"answer": {"type": "Decline"}}})]
    assert rig.driver.stats.declines == 1


def test_an_accept_applied_before_its_reply_was_lost_counts_once_even_if_the_offer_is_gone(rig):
    """The first patch reached etcd, the reply did not; the master launched the task and deleted the
    offer, so the retry gets 404: the Task exists, so the accept was ours and it is answered."""
    offered(rig)
    rig.kube.script[("offers", "o1")] = [(reset(), True), (api_error(404), False)]
    rig.kube.objects[("tasks", "t1")] = {"metadata": {"name": "t1"}, "spec": {"framework": "fw"}}
    rig.driver.accept("o1", [TaskInfo(name="t1", resources={"cpus": 1})])
    assert rig.driver.stats.accepts == 1
    drained = threading.Event()
    rig.driver.call_soon(drained.set)  # runs after any status update the accept queued
    assert drained.wait(3)
    assert not [e for e in rig.sched.events if e[0] == "status"]


def test_an_offer_gone_before_a_retried_accept_landed_is_task_lost(rig):
    offered(rig)
    rig.kube.script[("offers", "o1")] = [(reset(), False), (api_error(404), False)]
    rig.driver.accept("o1", [TaskInfo(name="t1", resources={"cpus": 1})])
    assert rig.driver.stats.accepts == 0
    assert rig.sched.wait(3)[-1][:4] == ("status", "t1", "TASK_LOST", "REASON_INVALID_OFFERS")


def test_kills_and_revives_retry_transient_errors(rig):
    subscribe(rig)
    rig.kube.script[("tasks", "t1")] = [(api_error(503), False), (reset(), True)]
    rig.kube.script[("frameworks", "fw")] = [(api_error(429), False)]
    rig.driver.kill_task("t1")
    rig.driver.revive()
    assert [(p, n) for p, n, _ in rig.kube.stored] == [("tasks", "t1"), ("tasks", "t1"), ("frameworks", "fw")]
    assert rig.driver.stats.kills == 1 and rig.driver.stats.revives == 1


def test_lease_renewals_retry_transient_errors():
    t = FakeTime()
    kube = FakeKube()
    d = SchedulerDriver(Recorder(), "fw", "ns", kube=kube, writes=t.policy())  # type: ignore[arg-type]
    d._lease_created = True
    real = kube.coordination.patch_namespaced_lease
    errors = [reset(), api_error(502)]

    def patch(*a, **k):
        if errors:
            raise errors.pop(0)
        return real(*a, **k)

    kube.coordination.patch_namespaced_lease = patch
    d.writes.call(d._renew_lease, "lease renewal")
    assert d.stats.lease_renewals == 1 and len(t.sleeps) == 2


# ---------------------------------------------------------------------------- create_tasks


def two_tasks() -> list[TaskInfo]:
    return [TaskInfo(name="t1", resources={"cpus": 1}), TaskInfo(name="t2", resources={"cpus": 1})]


def test_create_tasks_a_create_that_never_gets_through_rolls_back_and_the_offer_is_outstanding_again(own):
    offered(own)
    own.kube.create_script[("tasks", "t2")] = [(reset(), False) for _ in range(1000)]
    own.driver.accept("o1", two_tasks())
    assert own.kube.done("delete", "tasks") == ["t1"]  # t2 was read (404): never stored
    assert own.kube.stored == []  # no answer
    assert [o.id for o in own.driver.outstanding_offers()] == ["o1"]
    statuses = [e[1:4] for e in own.quiesce() if e[0] == "status"]
    assert sorted(statuses) == [
        ("t1", "TASK_LOST", "REASON_MASTER_DISCONNECTED"),
        ("t2", "TASK_LOST", "REASON_MASTER_DISCONNECTED"),
    ]
    # ... and it may be accepted again once the API server is back.
    own.kube.create_script.clear()
    own.driver.accept("o1", two_tasks())
    assert [b["spec"]["answer"] for _, _, b in own.kube.stored] == [
        {"type": "Accept", "taskNames": ["t1", "t2"]}
    ]
    assert own.driver.stats.accepts == 1 and own.driver.stats.task_creates == 4


def test_create_tasks_a_task_left_by_an_earlier_try_of_the_same_offer_is_ours(own):
    """A roll-back whose delete failed left t1, made for o1: a second accept of o1 uses it."""
    offered(own)
    own.kube.objects[("tasks", "t1")] = {
        "metadata": {"name": "t1", "uid": "earlier"},
        "spec": {"framework": "fw", "offer": "o1", "agent": "n1"},
    }
    own.driver._rolled_back.add("earlier")
    own.driver.accept("o1", [TaskInfo(name="t1", resources={"cpus": 1})])
    assert [b["spec"]["answer"]["taskNames"] for _, _, b in own.kube.stored] == [["t1"]]
    assert own.kube.done("delete", "tasks") == [] and own.driver._rolled_back == set()


@pytest.mark.parametrize(
    "master_status, pod, taken",
    [
        ("TASK_STAGING", None, True),  # the master wrote a status: it took the answer
        (None, "owned", True),  # the master made its pod
        (None, "absent", False),  # neither: the offer went before our answer landed
        (None, "no-read", None),  # no status and no pod read (403): cannot be told
    ],
)
def test_create_tasks_an_offer_gone_on_a_retried_answer(own, master_status, pod, taken):
    """The first answer patch reached etcd or not (its reply was lost either way); the retry gets
    404 as the offer is gone. With the Tasks made before the answer, only the master's traces
    on them tell whether it took the answer."""
    offered(own)
    own.kube.script[("offers", "o1")] = [(reset(), taken is not False), (api_error(404), False)]

    def master(plural, name, body):
        task = own.kube.objects[("tasks", "t1")]
        if master_status:
            task["status"] = {"state": master_status}
        if pod == "owned":
            own.kube.core.pods["t1"] = SimpleNamespace(
                metadata=SimpleNamespace(
                    labels={"mesoskube.io/framework": "fw", "mesoskube.io/task": "t1"},
                    owner_references=[SimpleNamespace(uid=task["metadata"]["uid"])],
                )
            )

    own.kube.on_stored = master
    if pod == "no-read":
        own.kube.core.fail = api_error(403, 'pods "t1" is forbidden')
    own.driver.accept("o1", two_tasks())
    statuses = [e[1:4] for e in own.quiesce() if e[0] == "status"]
    if taken:
        assert own.driver.stats.accepts == 1 and statuses == []
        assert own.kube.done("delete", "tasks") == []
    elif taken is None:  # left to the master: its TASK_LOST if it never took the answer
        assert own.driver.stats.accepts == 0 and statuses == []
        assert own.kube.done("delete", "tasks") == []
    else:
        assert own.driver.stats.accepts == 0
        assert sorted(own.kube.done("delete", "tasks")) == ["t1", "t2"]
        assert sorted(statuses) == [
            ("t1", "TASK_LOST", "REASON_INVALID_OFFERS"),
            ("t2", "TASK_LOST", "REASON_INVALID_OFFERS"),
        ]


def test_create_tasks_an_answer_never_stored_deletes_the_tasks(own):
    offered(own)
    own.kube.script[("offers", "o1")] = [(reset(), False) for _ in range(1000)]
    own.driver.accept("o1", two_tasks())
    assert sorted(own.kube.done("delete", "tasks")) == ["t1", "t2"]
    assert [o.id for o in own.driver.outstanding_offers()] == ["o1"]
    statuses = [e[1:3] for e in own.quiesce() if e[0] == "status"]
    assert sorted(statuses) == [("t1", "TASK_LOST"), ("t2", "TASK_LOST")]


def test_create_tasks_an_answer_the_api_server_refuses_deletes_the_tasks_and_declines(own):
    offered(own)
    own.kube.script[("offers", "o1")] = [(api_error(422, "spec.answer.taskNames: Duplicate value"), False)]
    own.driver.accept("o1", two_tasks())
    assert sorted(own.kube.done("delete", "tasks")) == ["t1", "t2"]
    assert [b["spec"]["answer"]["type"] for _, _, b in own.kube.stored] == ["Decline"]
    own.quiesce()
    got = {s.task_id: s for s in own.sched.statuses}
    assert {n: (s.state, s.message) for n, s in got.items()} == {
        "t1": (TaskState.ERROR, "spec.answer.taskNames: Duplicate value"),
        "t2": (TaskState.ERROR, "spec.answer.taskNames: Duplicate value"),
    }
