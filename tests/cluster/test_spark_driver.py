"""The scheduler SDK that Spark runs on, against the real master: the contract end to end
(subscribe, accept/decline/revive, kill, over-launch, reconcile, failover, heartbeat lapse)."""

from __future__ import annotations

import threading
import time

from mesoskube.frameworks.sdk import (
    DriverStatus,
    Offer,
    Scheduler,
    SchedulerDriver,
    TaskInfo,
    TaskStatus,
)
from tests.helpers import eventually, wait_torn_down


class Recorder(Scheduler):
    """Records callbacks; launches what `plan` returns for each offer, else declines."""

    def __init__(self, plan=None, refuse: float | None = None) -> None:
        self.plan = plan
        self.refuse = refuse
        self.events: list[tuple] = []
        self.offers: list[tuple[float, Offer]] = []
        self.statuses: dict[str, list[TaskStatus]] = {}
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def _note(self, *e) -> None:
        with self.lock:
            self.events.append(e)
            self.threads.add(threading.current_thread().name)

    def registered(self, driver, framework_id):
        self._note("registered", framework_id)

    def reregistered(self, driver):
        self._note("reregistered")

    def disconnected(self, driver):
        self._note("disconnected")

    def error(self, driver, message):
        self._note("error", message)

    def offer_rescinded(self, driver, offer_id):
        self._note("rescinded", offer_id)

    def resource_offers(self, driver, offers):
        self._note("offers", [o.id for o in offers])
        for o in offers:
            self.offers.append((time.monotonic(), o))
            tasks = self.plan(o) if self.plan else []
            if tasks:
                driver.accept(o.id, tasks)
            else:
                driver.decline(o.id, refuse_seconds=self.refuse)

    def status_update(self, driver, status):
        self._note("status", status.task_id, status.state.value)
        with self.lock:
            self.statuses.setdefault(status.task_id, []).append(status)

    def states(self, task_id: str) -> list[str]:
        with self.lock:
            return [s.state.value for s in self.statuses.get(task_id, [])]

    def last(self, task_id: str) -> TaskStatus | None:
        with self.lock:
            got = self.statuses.get(task_id)
            return got[-1] if got else None


def once(tasks: list[TaskInfo]):
    """A plan that launches `tasks` on the first offer only."""
    left = list(tasks)

    def plan(offer: Offer) -> list[TaskInfo]:
        out = list(left)
        left.clear()
        return out

    return plan


def sleeper(name: str, cpus: float = 1, mem: float = 256, seconds: float | None = None) -> TaskInfo:
    return TaskInfo(name=name, resources={"cpus": cpus, "mem": mem}, runSeconds=seconds)


def test_launch_status_updates_in_order_on_one_thread(kube, namespace, fake_nodes, master):
    fake_nodes(1, "cpu=4,memory=8Gi")
    master()
    rec = Recorder(once([sleeper("t1", seconds=1.0)]))
    d = SchedulerDriver(rec, "fw", namespace, kube=kube)
    d.start()
    try:
        eventually(lambda: "TASK_FINISHED" in rec.states("t1"), timeout=20, what="t1 finished")
        assert rec.events[0][0] == "registered"
        assert rec.states("t1")[-2:] == ["TASK_RUNNING", "TASK_FINISHED"]
        assert rec.states("t1")[0] == "TASK_STAGING", rec.states("t1")
        assert rec.last("t1").agent_id == rec.offers[0][1].agent_id
        assert len(rec.threads) == 1  # every callback on the driver's event thread
        assert d.stats.accepts == 1
    finally:
        d.stop()
    wait_torn_down(kube, namespace)


def test_over_launch_is_task_error_and_kill_is_task_killed(kube, namespace, fake_nodes, master):
    fake_nodes(1, "cpu=2,memory=4Gi")
    master()
    rec = Recorder(once([sleeper("big", cpus=3)]), refuse=0.5)
    d = SchedulerDriver(rec, "fw", namespace, kube=kube)
    d.start()
    try:
        # The master creates the Task, then writes TASK_ERROR: a status-less Task reads as STAGING.
        eventually(lambda: rec.states("big")[-1:] == ["TASK_ERROR"], timeout=15, what="TASK_ERROR")
        assert set(rec.states("big")) <= {"TASK_STAGING", "TASK_ERROR"}
        assert "cpus: asked 3, offered 2" in rec.last("big").message
        rec.plan = once([sleeper("victim")])
        eventually(lambda: "TASK_RUNNING" in rec.states("victim"), timeout=20, what="victim running")
        d.kill_task("victim")
        eventually(lambda: "TASK_KILLED" in rec.states("victim"), timeout=15, what="victim killed")
        d.kill_task("never-existed")
        eventually(lambda: rec.states("never-existed") == ["TASK_LOST"], timeout=5)
    finally:
        d.stop()
    wait_torn_down(kube, namespace)


def test_decline_filter_then_revive_brings_the_agent_back_at_once(kube, namespace, fake_nodes, master):
    fake_nodes(1)
    master()
    rec = Recorder(refuse=60)
    d = SchedulerDriver(rec, "fw", namespace, kube=kube)
    d.start()
    try:
        eventually(lambda: len(rec.offers) == 1, timeout=15, what="first offer")
        time.sleep(3)
        assert len(rec.offers) == 1, "re-offered inside the 60 s decline filter"
        revived = time.monotonic()
        d.revive()
        eventually(lambda: len(rec.offers) == 2, timeout=10, what="offer after revive")
        assert rec.offers[1][0] - revived < 3
        d.suppress()
        rec.refuse = 0
        time.sleep(3)
        assert len(rec.offers) == 2, "offered while suppressed"
    finally:
        d.stop()
    wait_torn_down(kube, namespace)


def test_failover_to_a_new_scheduler_process_keeps_tasks_and_reconciles(kube, namespace, fake_nodes, master):
    fake_nodes(1, "cpu=4,memory=8Gi")
    master()
    first = Recorder(once([sleeper("long-running")]))
    a = SchedulerDriver(first, "fw", namespace, kube=kube, failover_timeout=60)
    a.start()
    eventually(lambda: "TASK_RUNNING" in first.states("long-running"), timeout=20, what="task running")
    uid = kube.get("frameworks", namespace, "fw")["metadata"]["uid"]
    assert a.abort() is DriverStatus.ABORTED  # the scheduler process "dies" without teardown
    second = Recorder()
    b = SchedulerDriver(second, "fw", namespace, kube=kube, failover_timeout=60)
    b.start()
    try:
        eventually(lambda: second.events and second.events[0][0] == "registered", timeout=15)
        assert kube.get("frameworks", namespace, "fw")["metadata"]["uid"] == uid  # same framework
        lease = kube.coordination.read_namespaced_lease("fw", namespace)
        assert lease.spec.holder_identity == b.identity
        b.reconcile_tasks(["long-running", "no-such-task"])
        eventually(lambda: len(second.states("no-such-task")) >= 1, timeout=15, what="reconcile answer")
        assert second.states("no-such-task")[-1] == "TASK_LOST"
        assert second.states("long-running")[-1] == "TASK_RUNNING"
    finally:
        b.stop()
    wait_torn_down(kube, namespace)


def test_a_lapsed_heartbeat_disconnects_then_tears_down_after_the_failover_timeout(
    kube, namespace, fake_nodes, master
):
    fake_nodes(1, "cpu=4,memory=8Gi")
    master()
    rec = Recorder(once([sleeper("orphan")]))
    d = SchedulerDriver(
        rec, "fw", namespace, kube=kube, failover_timeout=2, lease_duration=2, heartbeat_interval=0.5
    )
    d.start()
    eventually(lambda: "TASK_RUNNING" in rec.states("orphan"), timeout=20, what="task running")
    d.abort()  # heartbeats stop; the Framework stays
    phases = []

    def phase() -> str | None:
        p = (kube.get("frameworks", namespace, "fw").get("status") or {}).get("phase")
        if not phases or phases[-1] != p:
            phases.append(p)
        return p

    eventually(lambda: phase() == "TornDown", timeout=30, what="framework torn down")
    assert "Disconnected" in phases
    task = kube.get("tasks", namespace, "orphan")
    eventually(
        lambda: (kube.get("tasks", namespace, "orphan").get("status") or {}).get("state") == "TASK_KILLED",
        timeout=15,
        what=f"orphan killed (was {task.get('status')})",
    )
    kube.delete("frameworks", namespace, "fw")  # a torn-down framework stays until deleted
    wait_torn_down(kube, namespace)
