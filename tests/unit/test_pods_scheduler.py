"""PodGroupScheduler against a fake driver (no I/O): what it accepts, declines, revives and reports."""

from __future__ import annotations

from mesoskube.api.models import TaskState
from mesoskube.frameworks.pods.groups import REFUSE_KEY, REFUSE_UNMET_KEY, Group
from mesoskube.frameworks.pods.scheduler import DEFAULT_REFUSE_SECONDS, PodGroupScheduler
from mesoskube.frameworks.sdk import Offer, TaskStatus
from tests.unit.test_pods_placement import TOLERATE_KWOK, agent, pod


class FakeDriver:
    def __init__(self) -> None:
        self.accepted: dict[str, list] = {}
        self.declined: dict[str, float | None] = {}
        self.revives = self.suppresses = 0
        self.forgotten: list[str] = []
        self.timers: list = []

    def accept(self, offer_id, tasks, filters=None):
        self.accepted[offer_id] = tasks

    def decline(self, offer_id, refuse_seconds=None):
        self.declined[offer_id] = refuse_seconds

    def revive(self):
        self.revives += 1

    def suppress(self):
        self.suppresses += 1

    def forget_task(self, name):
        self.forgotten.append(name)

    def call_later(self, delay, fn):
        self.timers.append(fn)

    def fire(self):
        """The fake clock: every timer set so far is due."""
        timers, self.timers = self.timers, []
        for fn in timers:
            fn()


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def rig(*agents, clock=None):
    reports: list[tuple[str, str]] = []
    views = {a.name: a for a in agents}
    s = PodGroupScheduler(
        Group("ns", "app"),
        lambda: views,
        lambda p, m: reports.append((p["metadata"]["name"], m)),
        clock=clock or Clock(),
    )
    return s, FakeDriver(), reports


def offer(id_, agent_name, cpus, mem, labels=None):
    return Offer.build(id_, agent_name, cpus=cpus, mem=mem, attributes=labels or {})


def test_pending_pods_are_packed_onto_offers_as_adopting_tasks():
    s, d, reports = rig(agent("n1"), agent("n2"))
    for i in range(3):
        s.pod_changed(d, pod(f"p{i}", cpu="1", memory="512Mi", tolerations=[TOLERATE_KWOK]))
    d.fire()
    assert d.revives == 1  # one revive for the lot
    s.resource_offers(d, [offer("o1", "n1", 2, 2048), offer("o2", "n2", 2, 2048)])
    assert [t.name for t in d.accepted["o1"]] == ["p0", "p1"]
    assert [t.name for t in d.accepted["o2"]] == ["p2"]
    t = d.accepted["o1"][0]
    assert t.pod.name == "p0" and t.pod.uid == "uid-p0" and t.resources.cpus == 1 and t.resources.mem == 512
    assert reports == []
    # Bound: the pods leave; with nothing left to place the next offers are declined and offers suppressed.
    for i in range(3):
        bound = pod(f"p{i}", nodeName="n1")
        s.pod_changed(d, bound)
        s.status_update(d, TaskStatus(task_id=f"p{i}", state=TaskState.RUNNING))
    s.resource_offers(d, [offer("o3", "n1", 2, 2048)])
    assert "o3" in d.declined
    assert d.suppresses == 1
    s.resource_offers(d, [offer("o4", "n1", 2, 2048)])
    assert d.suppresses == 1  # once
    s.pod_changed(d, pod("late", cpu="1", memory="512Mi", tolerations=[TOLERATE_KWOK]))
    d.fire()
    assert d.revives == 2 and not s.suppressed


def test_constraints_decline_longer_and_the_pod_gets_told_why():
    s, d, reports = rig(agent("n1", labels={"zone": "a"}), agent("n2", labels={"zone": "b"}))
    picky = pod(
        "p", nodeSelector={"zone": "b"}, tolerations=[TOLERATE_KWOK], annotations={REFUSE_UNMET_KEY: "90"}
    )
    s.pod_changed(d, picky)
    s.resource_offers(d, [offer("o1", "n1", 4, 4096, {"zone": "a"})])
    assert d.declined == {"o1": 90.0}
    assert reports == [("p", "0/1 offers fit: 1 node(s) didn't match Pod's node affinity/selector.")]
    s.resource_offers(d, [offer("o2", "n2", 4, 4096, {"zone": "b"})])
    assert [t.name for t in d.accepted["o2"]] == ["p"]


def test_too_small_offers_are_declined_with_the_pods_refuse_time():
    s, d, _ = rig(agent("n1"))
    s.pod_changed(d, pod("p", cpu="3", tolerations=[TOLERATE_KWOK], annotations={REFUSE_KEY: "2"}))
    s.resource_offers(d, [offer("o1", "n1", 1, 4096)])
    assert d.declined == {"o1": 2.0}
    s2, d2, _ = rig(agent("n1"))
    s2.pod_changed(d2, pod("p", cpu="3", tolerations=[TOLERATE_KWOK]))
    s2.resource_offers(d2, [offer("o1", "n1", 1, 4096)])
    assert d2.declined == {"o1": DEFAULT_REFUSE_SECONDS}


def test_a_pod_no_agent_can_ever_run_is_reported_on_arrival():
    s, d, reports = rig(agent("n1", cpus=4), agent("n2", cpus=4))
    s.pod_changed(d, pod("huge", cpu="64", tolerations=[TOLERATE_KWOK]))
    assert reports == [("huge", "0/2 agents fit: 2 Insufficient cpu. No agent can ever run this pod.")]
    s.pod_changed(d, pod("untolerated"))
    assert (
        reports[-1][0] == "untolerated" and "untolerated taint {kwok.x-k8s.io/node: fake}" in reports[-1][1]
    )


def test_a_failed_placement_forgets_the_task_and_tries_again():
    s, d, reports = rig(agent("n1"))
    s.pod_changed(d, pod("p", tolerations=[TOLERATE_KWOK]))
    s.resource_offers(d, [offer("o1", "n1", 4, 4096)])
    assert "o1" in d.accepted
    s.status_update(
        d, TaskStatus(task_id="p", state=TaskState.ERROR, message="cannot adopt: pod p not found")
    )
    assert d.forgotten == ["p"]
    assert "placement failed (TASK_ERROR: cannot adopt: pod p not found); retrying" in reports[-1][1]
    s.resource_offers(d, [offer("o2", "n1", 4, 4096)])
    assert "o2" in d.accepted


def test_a_new_pod_reusing_an_ended_tasks_name_forgets_that_task_first():
    s, d, _ = rig(agent("n1"))
    s.status_update(d, TaskStatus(task_id="web-0", state=TaskState.KILLED))
    s.pod_changed(d, pod("web-0", tolerations=[TOLERATE_KWOK]))
    assert d.forgotten == ["web-0"]


def test_pods_whose_names_cannot_be_task_names_are_reported_not_placed():
    s, d, reports = rig(agent("n1"))
    s.pod_changed(d, pod("a." + "b" * 70, tolerations=[TOLERATE_KWOK]))
    assert "is not a DNS label of at most 63 characters" in reports[0][1]
    s.resource_offers(d, [offer("o1", "n1", 4, 4096)])
    assert d.accepted == {}


def test_a_task_ending_while_a_pod_of_its_name_is_pending_is_forgotten_for_that_pod():
    """A StatefulSet-style pod recreated under the same name before its old Task ended."""
    s, d, _ = rig(agent("n1"))
    s.pod_changed(d, pod("web-0", tolerations=[TOLERATE_KWOK]))
    s.status_update(d, TaskStatus(task_id="web-0", state=TaskState.KILLED, reason="REASON_POD_DELETED"))
    assert d.forgotten == ["web-0"]
    d.fire()
    assert d.revives == 1


def test_an_accept_never_heard_of_is_placed_again_after_the_launch_timeout():
    clock = Clock()
    s, d, _ = rig(agent("n1"), clock=clock)
    s.pod_changed(d, pod("p", tolerations=[TOLERATE_KWOK]))
    s.resource_offers(d, [offer("o1", "n1", 4, 4096)])
    s.resource_offers(d, [offer("o2", "n1", 4, 4096)])
    assert "o1" in d.accepted and "o2" in d.declined  # launching: not placed twice
    clock.now += 31
    s.resource_offers(d, [offer("o3", "n1", 4, 4096)])
    assert "o3" in d.accepted
