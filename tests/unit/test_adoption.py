"""The master's launch of a task adopting a pod: a Binding instead of a pod, and what ends such a
task before the binding. Engine bookkeeping with a recording writer, no API server."""

from __future__ import annotations

from mesoskube.master.cache import Cache
from mesoskube.master.engine import Engine
from mesoskube.master.writer import ApiError
from mesoskube.settings import Settings

NOW = 1000.0


class Writer:
    """Records the master's writes (the Writer's surface this path uses); patch_status answers
    with the patched Task."""

    def __init__(self, cache: Cache, bind_error: int | None = None) -> None:
        self.cache, self.bind_error = cache, bind_error
        self.bindings: list[tuple[str, dict]] = []
        self.statuses: list[dict] = []
        self.deleted: list[str] = []
        self.events: list[str] = []

    def bind_pod(self, ns, binding):
        if self.bind_error:
            raise ApiError(self.bind_error, "Conflict")
        self.bindings.append((ns, binding))

    def delete_pod(self, ns, name):
        self.deleted.append(name)

    def create_event(self, ns, body):
        self.events.append(body["reason"])

    def patch_status(self, plural, ns, name, body):
        self.statuses.append(body["status"])
        task = dict(self.cache.tasks[f"{ns}/{name}"])
        task["status"] = {**(task.get("status") or {}), **body["status"]}
        task["metadata"] = {**task["metadata"], "resourceVersion": str(len(self.statuses) + 10)}
        return task


def node(name="n1") -> dict:
    return {
        "metadata": {"name": name, "uid": f"u-{name}", "resourceVersion": "1", "labels": {}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "8", "memory": "32Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pending_pod(node_name: str | None = None) -> dict:
    spec = {"schedulerName": "mesoskube", "containers": [{"name": "c"}]}
    if node_name:
        spec["nodeName"] = node_name
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "pod-uid", "resourceVersion": "5"},
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def adopting_task(kill: bool = False, agent: str = "n1") -> dict:
    return {
        "apiVersion": "mesoskube.io/v1alpha1",
        "kind": "Task",
        "metadata": {"name": "p", "namespace": "ns", "uid": "task-uid", "resourceVersion": "7"},
        "spec": {
            "framework": "fw",
            "agent": agent,
            "resources": {"cpus": 0.5, "mem": 256},
            "pod": {"name": "p", "uid": "pod-uid"},
            "kill": kill,
        },
    }


def rig(task: dict, bind_error: int | None = None, with_node: bool = True) -> tuple[Engine, Writer]:
    cache = Cache()
    if with_node:
        cache.upsert_node(node())
    cache.upsert_pod(pending_pod(), ours=True)
    cache.upsert("tasks", task)
    writer = Writer(cache, bind_error)
    e = Engine(writer=writer, settings=Settings(), cache=cache, clock=lambda: NOW, workers=0)  # type: ignore[arg-type]
    e.provenance.made(task)  # the master made it (an accept): a forged Task gets no binding
    return e, writer


def test_launch_binds_the_pod_with_its_uid_and_writes_no_status_until_it_runs():
    e, w = rig(adopting_task())
    e.sync_task("ns/p", e.cache.tasks["ns/p"], NOW)
    assert w.bindings == [
        (
            "ns",
            {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": "p", "uid": "pod-uid"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"},
            },
        )
    ]
    assert w.statuses == []
    # The watch has not shown the bound pod yet: no second binding.
    e.sync_task("ns/p", e.cache.tasks["ns/p"], NOW)
    assert len(w.bindings) == 1
    # Once shown bound and running, the pod is mirrored as any task's.
    running = pending_pod("n1")
    running["metadata"]["resourceVersion"] = "6"
    running["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    e.cache.upsert_pod(running, ours=True)
    e.sync_task("ns/p", e.cache.tasks["ns/p"], NOW)
    assert w.statuses[-1]["state"] == "TASK_RUNNING" and w.statuses[-1]["podName"] == "p"
    assert len(w.bindings) == 1 and w.deleted == []


def test_a_kill_before_the_binding_leaves_the_pod_alone():
    e, w = rig(adopting_task(kill=True))
    e.sync_task("ns/p", e.cache.tasks["ns/p"], NOW)
    assert w.bindings == [] and w.deleted == []
    assert w.statuses[-1]["state"] == "TASK_KILLED"
    assert w.statuses[-1]["reason"] == "REASON_TASK_KILLED_DURING_LAUNCH"


def test_an_agent_gone_before_the_binding_is_task_lost_and_the_pod_stays():
    e, w = rig(adopting_task(), with_node=False)
    e.sync_task("ns/p", e.cache.tasks["ns/p"], NOW)
    assert w.bindings == [] and w.deleted == []
    assert w.statuses[-1]["state"] == "TASK_LOST"


def test_a_refused_binding_is_task_error_saying_so():
    e, w = rig(adopting_task(), bind_error=409)
    e.sync_task("ns/p", e.cache.tasks["ns/p"], NOW)
    assert w.statuses[-1]["state"] == "TASK_ERROR"
    assert "cannot bind pod p to n1: replaced or bound elsewhere" in w.statuses[-1]["message"]
    assert w.events == ["TASK_ERROR"]


def test_an_accept_adopting_a_pod_binds_it_through_the_engine_and_mirrors_it():
    """The whole path over the emulated API: offer, accept naming the pod, a Binding (no pod
    created), the bound pod mirrored into its Task."""
    from tests.unit.enginerig import Rig, task_info

    rig = Rig()
    user_pod = pending_pod()
    user_pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "500m", "memory": "256Mi"}}
    rig.api.create("pods", "ns", user_pod)
    rig.node("n1")
    rig.framework()
    rig.step()
    offer = rig.offer_on("n1")
    adopting = task_info("p", cpus=0.5, pod={"name": "p", "uid": "pod-uid"})
    adopting["resources"]["mem"] = 256
    rig.accept(offer, adopting)
    rig.watch()
    rig.step()
    assert rig.api.get("pods", "ns/p")["spec"]["nodeName"] == "n1"
    assert rig.api.names("pods") == {"p"}  # bound, not created
    rig.run_pod("ns/p")
    rig.settle()
    assert rig.state("ns/p") == "TASK_RUNNING"
    assert rig.task("ns/p")["status"]["podName"] == "p"
