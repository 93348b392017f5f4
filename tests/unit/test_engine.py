"""The master's engine over an emulated API (tests/unit/fakeapi.py) with a fake clock: the defects
issue 11 lists, each reproduced, and the engine's behaviour around them. No threads, no sleeps."""

from __future__ import annotations

import pytest

from mesoskube import metrics
from mesoskube.api.models import FrameworkSpec, OfferAnswer
from mesoskube.master.contract import CLOCK_SKEW_ALLOWANCE
from mesoskube.master.writer import ApiError
from tests.unit.enginerig import Rig, task_info


def launched_rig(**settings) -> tuple[Rig, str]:
    rig = Rig(**settings)
    rig.node("n1")
    rig.framework()
    rig.step()  # allocation
    return rig, rig.offer_on("n1")


# ---------------------------------------------------------------- launch and the work queue


def test_an_accept_becomes_a_task_and_a_pod_and_the_offer_goes() -> None:
    rig, offer = launched_rig()
    rig.accept(offer, task_info("t1"))
    rig.watch()
    rig.step()
    assert rig.task("ns/t1")["spec"]["agent"] == "n1"
    assert rig.api.get("pods", "ns/t1")["spec"]["nodeName"] == "n1"
    assert rig.api.get("offers", offer) is None
    rig.run_pod("ns/t1")
    rig.watch()
    rig.step()
    assert rig.state("ns/t1") == "TASK_RUNNING"


def test_an_exception_that_is_not_an_api_error_requeues_the_answer_with_backoff() -> None:
    """Defect: a read timeout or reset connection dropped the step's queued keys, so the answered
    offer held its agent and an offer slot until the master restarted."""
    rig, offer = launched_rig()
    rig.api.fail("create:tasks", ConnectionResetError("connection reset by peer"))
    rig.accept(offer, task_info("t1"))
    rig.watch()
    rig.step()
    assert rig.task("ns/t1") is None and rig.api.get("offers", offer) is not None
    assert offer in rig.engine.answer_queue  # not lost: waiting out its backoff
    rig.step(advance=rig.engine.answer_queue.backoff(0))
    assert rig.task("ns/t1") is not None and rig.api.get("offers", offer) is None


def test_an_accept_is_all_or_none_a_failed_create_rolls_back_the_tasks_created() -> None:
    rig, offer = launched_rig()
    original = rig.api.create
    created = []

    def create(plural, ns, body):
        if plural == "tasks" and len(created) == 1:
            created.append(body["metadata"]["name"])
            raise ApiError(503, "ServiceUnavailable")
        out = original(plural, ns, body)
        if plural == "tasks":
            created.append(body["metadata"]["name"])
        return out

    rig.api.create = create  # type: ignore[method-assign]
    rig.accept(offer, task_info("t1"), task_info("t2"), task_info("t3"))
    rig.watch()
    rig.step()
    assert rig.api.names("tasks") == set(), "t1 was created, then rolled back"
    assert not rig.cache.tasks and not rig.cache.assumed["tasks"]
    assert rig.api.names("pods") == set()
    rig.api.create = original  # type: ignore[method-assign]
    rig.step(advance=1)
    assert rig.api.names("tasks") == {"t1", "t2", "t3"}
    assert rig.api.names("pods") == {"t1", "t2", "t3"}


def test_two_accepts_naming_one_task_in_one_step_launch_it_once_and_refuse_the_other_whole() -> None:
    """Defect: both accepts passed the name check; the second create got 409, which was swallowed:
    the offer was never deleted or retried, and the rest of that accept stayed launched."""
    rig = Rig()
    rig.node("n1")
    rig.node("n2")
    rig.framework()
    rig.step()
    a, b = rig.offer_on("n1"), rig.offer_on("n2")
    rig.accept(a, task_info("t1"))
    rig.accept(b, task_info("t1"), task_info("t2"))
    rig.watch()
    # The second accept is handled while the first one's create is in flight (the pool runs
    # answers concurrently): the worst moment for the name check.
    original = rig.api.create
    interleaved = []

    def create(plural, ns, body):
        if plural == "tasks" and not interleaved:
            interleaved.append(True)
            rig.engine.handle_answer(b, rig.cache.offers[b], rig.clock())
            rig.engine.snapshot(rig.clock())  # and a cycle reads the cache (it memoises on bodies)
        return original(plural, ns, body)

    rig.api.create = create  # type: ignore[method-assign]
    rig.step()
    rig.settle()
    assert rig.task("ns/t1")["spec"]["offer"] == a.split("/")[1]
    assert rig.state("ns/t2") == "TASK_ERROR"
    assert "already used" in rig.task("ns/t2")["status"]["message"]
    assert rig.api.names("pods") == {"t1"}
    assert rig.api.get("offers", a) is None and rig.api.get("offers", b) is None


# ---------------------------------------------------------------- host ports


def test_host_ports_of_a_launched_task_without_a_pod_yet_are_not_offered_again() -> None:
    """Defect: a just-launched task's ports were offered again until its pod appeared on the watch."""
    rig, offer = launched_rig()
    rig.accept(offer, task_info("t1", cpus=1, ports="31000-31009"))
    rig.watch()
    rig.step(watch=False)  # Task and Pod created; the watch has not shown the pod yet
    rig.cache.upsert("tasks", rig.api.get("tasks", "ns/t1"))
    agent = {a.name: a for a in rig.engine.snapshot(rig.clock()).agents}["n1"]
    assert not any(lo <= 31005 <= hi for lo, hi in agent.available.ports)
    assert agent.available.cpus == 7


def test_two_tasks_of_one_accept_asking_for_one_host_port_are_refused() -> None:
    """Defect: both were launched on the same node."""
    rig, offer = launched_rig()
    rig.accept(offer, task_info("t1", ports="31000-31001"), task_info("t2", ports="31001"))
    rig.watch()
    rig.step()
    assert rig.state("ns/t1") == rig.state("ns/t2") == "TASK_ERROR"
    assert "31001" in rig.task("ns/t2")["status"]["message"]
    assert rig.api.names("pods") == set()


# ---------------------------------------------------------------- refusal filters


def test_the_masters_default_refuse_seconds_applies_when_the_answer_and_framework_omit_it() -> None:
    """Defect: the CRD filled in 5 s everywhere, so --default-refuse-seconds never took effect."""
    assert FrameworkSpec().defaultFilters is None
    assert OfferAnswer.model_validate({"type": "Decline", "filters": {}}).filters.refuseSeconds is None
    rig, offer = launched_rig(defaultRefuseSeconds=20)
    rig.answer(offer, {"type": "Decline"})
    rig.watch()
    now = rig.clock()
    rig.step()
    assert rig.engine.filters[("ns/fw", "n1")][0] == now + 20
    rig.step(advance=19)
    assert rig.offers() == {}, "still filtered"
    rig.step(advance=2)
    rig.step()
    assert len(rig.offers()) == 1


def test_a_framework_default_filter_beats_the_masters_setting() -> None:
    rig = Rig(defaultRefuseSeconds=20)
    rig.node("n1")
    rig.framework(defaultFilters={"refuseSeconds": 3})
    rig.step()
    rig.answer(rig.offer_on("n1"), {"type": "Decline", "filters": {}})
    rig.watch()
    now = rig.clock()
    rig.step()
    assert rig.engine.filters[("ns/fw", "n1")][0] == now + 3


# ---------------------------------------------------------------- lost accepts and pod errors


def test_an_offer_deleted_between_accept_and_processing_gives_the_framework_task_lost() -> None:
    """Defect: the accept was lost silently (no Task, no status update)."""
    rig, offer = launched_rig()
    rig.accept(offer, task_info("t1"), task_info("t2"))
    ns, _, name = offer.partition("/")
    rig.api.delete("offers", ns, name)  # by the framework, a person or a garbage collector
    rig.watch()  # MODIFIED (answer) and DELETED arrive together
    rig.step()
    for t in ("ns/t1", "ns/t2"):
        assert rig.state(t) == "TASK_LOST"
        assert rig.task(t)["status"]["reason"] == "REASON_INVALID_OFFERS"
    assert rig.api.names("pods") == set()


@pytest.mark.parametrize("status", [429, 500, 503, 0])
def test_a_transient_pod_create_error_is_retried_with_backoff_not_task_error(status: int) -> None:
    """Defect: any pod-create error but 409 made the task TASK_ERROR for good."""
    rig, offer = launched_rig()
    rig.api.fail("create:pods", ApiError(status, "transient"), times=2)
    rig.accept(offer, task_info("t1"))
    rig.watch()
    rig.step()
    assert rig.state("ns/t1") is None and rig.api.names("pods") == set()
    q = rig.engine.task_queue
    assert "ns/t1" in q
    rig.step(advance=q.backoff(0))
    assert rig.api.names("pods") == set() and q.failures("ns/t1") == 2
    rig.step(advance=q.backoff(1))
    assert rig.api.names("pods") == {"t1"}
    assert rig.state("ns/t1") is None  # TASK_STAGING until the pod's first real phase


def test_a_pod_the_api_server_rejects_for_good_is_task_error() -> None:
    rig, offer = launched_rig()
    rig.api.fail("create:pods", ApiError(422, "Invalid"))
    rig.accept(offer, task_info("t1"))
    rig.watch()
    rig.step()
    assert rig.state("ns/t1") == "TASK_ERROR"
    assert rig.task("ns/t1")["status"]["reason"] == "REASON_POD_REJECTED"


# ---------------------------------------------------------------- agent health


def running_task(rig: Rig, name: str, framework: str, agent: str) -> str:
    for _ in range(3):
        rig.step(advance=1)
        if any(o["spec"]["agent"] == agent for o in rig.offers(framework).values()):
            break
    rig.accept(rig.offer_on(agent, framework), task_info(name))
    rig.watch()
    rig.step()
    rig.run_pod(f"ns/{name}")
    rig.watch()
    rig.step()
    assert rig.state(f"ns/{name}") == "TASK_RUNNING"
    return f"ns/{name}"


def test_tasks_on_a_node_notready_past_the_timeout_become_unreachable_or_lost_and_come_back() -> None:
    """Defect: tasks on a NotReady node stayed TASK_RUNNING forever."""
    rig = Rig(agentUnreachableTimeout=60)
    rig.node("n1")
    rig.framework("aware", capabilities=["PARTITION_AWARE"])
    rig.framework("plain")
    aware = running_task(rig, "ta", "aware", "n1")
    plain = running_task(rig, "tp", "plain", "n1")
    rig.node("n1", ready=False)
    rig.step()
    rig.step(advance=30)
    assert rig.state(aware) == rig.state(plain) == "TASK_RUNNING"  # not yet past the timeout
    rig.step(advance=31)
    rig.step()
    assert rig.state(aware) == "TASK_UNREACHABLE"
    assert rig.state(plain) == "TASK_LOST"
    assert rig.task(plain)["status"]["reason"] == "REASON_AGENT_UNREACHABLE"
    assert rig.api.get("pods", plain) is None, "a non-partition-aware task's pod is removed"
    assert rig.api.get("pods", aware) is not None
    rig.node("n1", ready=True)
    rig.step()
    rig.step()
    assert rig.state(aware) == "TASK_RUNNING", "its pod still runs: reconciled"
    assert rig.state(plain) == "TASK_LOST"


def test_a_node_that_flaps_back_before_the_timeout_changes_nothing() -> None:
    rig = Rig(agentUnreachableTimeout=60)
    rig.node("n1")
    rig.framework()
    t = running_task(rig, "t1", "fw", "n1")
    rig.node("n1", ready=False)
    rig.step(advance=50)
    rig.node("n1", ready=True)
    rig.step(advance=50)
    rig.node("n1", ready=False)
    rig.step(advance=50)
    assert rig.state(t) == "TASK_RUNNING"


# ---------------------------------------------------------------- bounded memos


def test_memos_forget_tasks_offers_and_frameworks_that_went() -> None:
    """Defect: Cache._versions, launched, accepted_at and per-framework metric series grew forever."""
    rig, offer = launched_rig()
    rig.accept(offer, task_info("t1"))
    rig.watch()
    rig.step()
    rig.engine.publish_status(rig.clock())
    assert ("ns/fw",) in {
        tuple(s.labels.values()) for m in metrics.framework_share.collect() for s in m.samples
    }
    assert "ns/t1" in rig.engine.launched
    rig.api.delete("pods", "ns", "t1")
    rig.api.delete("tasks", "ns", "t1")
    rig.api.objects["frameworks"].clear()
    rig.watch()
    rig.step()
    rig.engine.publish_status(rig.clock())
    e = rig.engine
    assert "ns/t1" not in e.launched and "ns/t1" not in e.accepted_at and "ns/t1" not in e.killing
    assert not [k for k in rig.cache._versions if "t1" in k or offer in k or "ns/fw" in k]
    assert ("ns/fw",) not in {
        tuple(s.labels.values()) for m in metrics.framework_share.collect() for s in m.samples
    }


# ---------------------------------------------------------------- behaviour covered before only on a cluster


def test_offers_are_rescinded_when_their_agent_goes_and_its_tasks_are_lost() -> None:
    rig = Rig()
    rig.node("n1")
    rig.node("n2")
    rig.framework()
    t = running_task(rig, "t1", "fw", "n1")
    rig.step(advance=6)  # the leftover filter lapses: n1 offered again
    other = rig.offer_on("n2")
    rig.handlers.event("nodes", "DELETED", {"metadata": {"name": "n2"}})
    rig.handlers.event("nodes", "DELETED", {"metadata": {"name": "n1"}})
    rig.step()
    rig.step()
    assert rig.api.get("offers", other)["status"]["phase"] == "Rescinded"
    assert rig.state(t) == "TASK_LOST"
    assert "OffersRescinded" in [reason for reason, _ in rig.api.events()]


def test_an_unanswered_offer_expires_after_the_offer_timeout_and_goes_after_retention() -> None:
    rig = Rig(offerTimeout=10, offerRetention=5)
    rig.node("n1")
    rig.framework()
    rig.step()
    offer = rig.offer_on("n1")
    rig.step(advance=9)
    assert rig.api.get("offers", offer).get("status", {}).get("phase") in (None, "Outstanding")
    rig.step(advance=2)
    assert rig.api.get("offers", offer)["status"]["phase"] == "Expired"
    rig.step(advance=6)
    assert rig.api.get("offers", offer) is None


def test_a_late_answer_to_a_rescinded_offer_is_refused_on_the_offer() -> None:
    rig = Rig(offerTimeout=10)
    rig.node("n1")
    rig.framework()
    rig.step()
    offer = rig.offer_on("n1")
    rig.step(advance=11)
    rig.accept(offer, task_info("t1"))
    rig.watch()
    rig.step()
    status = rig.api.get("offers", offer)["status"]
    assert status["answerRefused"] is True and "expired" in status["message"]
    assert rig.task("ns/t1") is None


def test_a_lapsed_heartbeat_disconnects_and_the_failover_timeout_tears_down() -> None:
    rig = Rig()
    rig.node("n1")
    rig.framework(failoverTimeoutSeconds=30)
    t = running_task(rig, "t1", "fw", "n1")
    # Liveness counts from when the master saw the Lease change, not from its renewTime's value.
    rig.api.leases["ns/fw"] = {"renew": "2020-01-01T00:00:00Z", "version": "7", "duration": 15}
    rig.engine.poll_leases(force=True)
    rig.step()
    assert rig.api.get("frameworks", "ns/fw")["status"]["phase"] == "Subscribed"
    for _ in range(8):  # polled every 2 s, unchanged: lapsed after 15 s of the master's clock
        rig.step(advance=2)
    assert rig.api.get("frameworks", "ns/fw")["status"]["phase"] == "Disconnected"
    rig.settle(steps=14, advance=2)  # the master keeps polling: a long gap would count as its outage
    assert rig.api.get("frameworks", "ns/fw")["status"]["phase"] == "Disconnected"
    rig.settle(steps=2, advance=2)
    assert rig.api.get("frameworks", "ns/fw")["status"]["phase"] == "TornDown"
    assert not rig.task(t)["spec"].get("kill")  # read from the TORN_DOWN phase: no write per task
    rig.settle()
    assert rig.api.get("pods", t) is None
    rig.settle()
    assert rig.state(t) == "TASK_KILLED"
    assert "framework was removed" in rig.task(t)["status"]["message"]


def test_explicit_and_implicit_reconciliation_answer_on_the_framework_status() -> None:
    rig = Rig()
    rig.node("n1")
    rig.framework()
    t = running_task(rig, "t1", "fw", "n1")
    rig.api.patch("frameworks", "ns", "fw", {"spec": {"reconcile": {"id": "r1", "taskIds": ["t1", "nope"]}}})
    rig.watch()
    rig.step()
    st = rig.api.get("frameworks", "ns/fw")["status"]
    assert st["observedReconcile"] == "r1"
    assert {r["taskId"]: r["state"] for r in st["reconciled"]} == {"t1": "TASK_RUNNING", "nope": "TASK_LOST"}
    rig.api.patch("frameworks", "ns", "fw", {"spec": {"reconcile": {"id": "r2"}}})
    rig.watch()
    rig.step()
    st = rig.api.get("frameworks", "ns/fw")["status"]
    assert [r["taskId"] for r in st["reconciled"]] == [t.split("/")[1]]


def test_a_decline_swept_before_it_was_processed_still_filters_through_the_handlers() -> None:
    rig, offer = launched_rig()
    rig.answer(offer, {"type": "Decline", "filters": {"refuseSeconds": 30}})
    ns, _, _ = offer.partition("/")
    rig.api.delete_collection("offers", ns, "spec.answer.type=Decline")  # another step's sweep
    rig.watch()
    rig.step(advance=1)
    assert rig.offers() == {} and rig.engine.filters[("ns/fw", "n1")][0] > rig.clock() + 28


def test_an_offer_or_task_the_master_did_not_make_launches_nothing_and_says_why() -> None:
    """Provenance through the engine's parts: Offers the allocation made and Tasks the answers made
    are acted on; an answered Offer or a Task created by someone else is closed with a reason."""
    rig, offer = launched_rig()
    made = rig.api.get("offers", offer)
    forged = {
        "metadata": {"name": "forged"},
        "spec": {**made["spec"], "answer": {"type": "Accept", "tasks": [task_info("f1")]}},
    }
    rig.api.create("offers", "ns", forged)
    task = {"metadata": {"name": "f2"}, "spec": {"framework": "fw", "role": "*", "agent": "n1",
                                                 "resources": {"cpus": 1}}}  # fmt: skip
    rig.api.create("tasks", "ns", task)
    rig.accept(offer, task_info("t1"))
    rig.settle()
    status = rig.api.get("offers", "ns/forged")["status"]
    assert (status["phase"], status["reason"]) == ("Invalid", "REASON_NOT_FROM_MASTER")
    # The framework that answered hears it (the SDK makes the tasks TASK_LOST): without this, the
    # tasks it accepted stayed in flight for it forever (the chaos test's 5 of 150 unfinished).
    assert status["answerRefused"] is True
    assert rig.task("ns/f1") is None and rig.api.get("pods", "ns/f1") is None
    assert rig.state("ns/f2") == "TASK_ERROR" and rig.api.get("pods", "ns/f2") is None
    assert rig.api.get("pods", "ns/t1")["spec"]["nodeName"] == "n1"  # the master's own launched


def test_a_forged_terminal_status_of_a_running_task_is_corrected_from_its_pod() -> None:
    rig, offer = launched_rig()
    rig.accept(offer, task_info("t1"))
    rig.settle()
    rig.run_pod("ns/t1")
    rig.settle()
    assert rig.state("ns/t1") == "TASK_RUNNING"
    rig.api.patch_status("tasks", "ns", "t1", {"status": {"state": "TASK_FINISHED", "finishedAt": "x"}})
    rig.settle()
    status = rig.task("ns/t1")["status"]
    assert status["state"] == "TASK_RUNNING" and "finishedAt" not in status
    assert "not written by the master" in status["message"]
    # A real end is not a forgery: the pod's own Succeeded stands.
    rig.run_pod("ns/t1", "Succeeded")
    rig.settle()
    assert rig.state("ns/t1") == "TASK_FINISHED"


def test_a_reused_task_name_is_reported_on_a_task_of_its_own_and_launches_nothing() -> None:
    rig, offer = launched_rig()
    rig.accept(offer, task_info("t1"), task_info("t2"))
    rig.settle()
    rig.run_pod("ns/t1", "Succeeded")
    rig.settle()
    assert rig.state("ns/t1") == "TASK_FINISHED"
    rig.settle(advance=3)  # past the leftover's default refusal (5 s)
    again = rig.offer_on("n1")
    rig.accept(again, task_info("t1"))
    rig.settle()
    refused = [f"ns/{t}" for t in rig.api.names("tasks") if t.startswith("t1-dup-")]
    assert len(refused) == 1
    body = rig.task(refused[0])
    assert body["metadata"]["labels"]["mesoskube.io/mesos-task-id"] == "t1"
    assert body["status"]["state"] == "TASK_ERROR" and "already used by Task t1" in body["status"]["message"]
    assert rig.api.get("pods", refused[0]) is None and rig.state("ns/t1") == "TASK_FINISHED"


def old_leader_with_a_running_task_and_an_answered_offer() -> tuple[Rig, Rig, str]:
    """A leader and a standby synced before any Framework existed; the leader made offers on n1 and
    n2, launched t1 on n1 (RUNNING), and dies just after the framework accepted its n2 offer (t2)."""
    leader = Rig()
    standby = Rig(api=leader.api)
    for rig in (leader, standby):
        rig.node("n1")
        rig.node("n2")
    standby.watch()  # synced (the seed) while no Framework, Offer or Task exists yet
    standby.engine.mark_all()
    leader.framework()
    leader.step()  # offers on n1 and n2, made by the leader
    leader.accept(leader.offer_on("n1"), task_info("t1"))
    leader.watch()
    leader.step()
    leader.run_pod("ns/t1")
    leader.watch()
    leader.step()
    assert leader.state("ns/t1") == "TASK_RUNNING"
    later_offer = leader.offer_on("n2")
    leader.accept(later_offer, task_info("t2"))
    return leader, standby, later_offer


def test_a_standby_taking_over_acts_on_the_offers_and_tasks_the_old_leader_made_after_its_seed() -> None:
    """Defect: a warm standby trusted only the Offers and Tasks its first LIST found. What the
    leader made after that was taken for forgeries on takeover: a running task made TASK_ERROR
    while its pod ran (the framework relaunched it: a Task and a pod more) and an accept of the old
    leader's offer closed Invalid (its tasks TASK_LOST). One likely cause of the chaos run's 11
    Tasks and pods more than the framework's counts."""
    _leader, standby, later_offer = old_leader_with_a_running_task_and_an_answered_offer()
    standby.watch()
    standby.engine.mark_all()
    standby.settle()
    assert standby.state("ns/t1") == "TASK_RUNNING"
    assert standby.task("ns/t2")["spec"]["agent"] == "n2"
    assert standby.api.get("pods", "ns/t2")["spec"]["nodeName"] == "n2"
    assert standby.api.get("offers", later_offer) is None  # accepted, not closed Invalid


def test_what_the_old_leader_made_before_the_takeover_is_trusted_when_the_watch_shows_it_later() -> None:
    """The race the graceful handover made likelier: the old leader's last Offer and Task reach the
    new leader's watch only after it took over. They were made before it led (creationTimestamp),
    as everything its cache held then: an earlier master's, acted on, not refused as forgeries (a
    running task made TASK_ERROR, an accept closed Invalid). One made after it is still refused."""
    leader, standby, later_offer = old_leader_with_a_running_task_and_an_answered_offer()
    # The leader dies; the standby takes over before its watch has shown any of that.
    standby.engine.take_over()
    standby.clock.advance(CLOCK_SKEW_ALLOWANCE + 2.0)  # past the allowance for a replica's clock
    forged = {"metadata": {"name": "forged"}, "spec": {"framework": "fw", "agent": "n1", "resources": {}}}
    leader.api.create("tasks", "ns", forged)
    standby.settle()
    assert standby.state("ns/t1") == "TASK_RUNNING"
    assert standby.api.get("pods", "ns/t2")["spec"]["nodeName"] == "n2"
    assert standby.api.get("offers", later_offer) is None  # accepted, not closed Invalid
    assert standby.state("ns/forged") == "TASK_ERROR" and standby.api.get("pods", "ns/forged") is None


def test_an_answer_worked_after_its_frameworks_teardown_launches_nothing() -> None:
    """An answered Offer is left out of TEARDOWN's rescind (its answer is the framework's); worked
    after the TEARDOWN (frameworks come first in a step) it launched Tasks and pods for a framework
    being removed, after its other tasks were killed. As in Mesos, a removed framework's calls
    are dropped: nothing launches, the Offer goes."""
    from mesoskube.master.cache import format_time

    rig = Rig()
    rig.node("n1")
    rig.framework()
    rig.step()
    rig.watch()
    offer = rig.offer_on("n1")
    rig.accept(offer, task_info("t1"))
    rig.api.patch("frameworks", "ns", "fw", {"metadata": {"deletionTimestamp": format_time(rig.clock())}})
    rig.watch()  # both events in one watch batch: the TEARDOWN is worked first
    rig.settle()
    assert rig.task("ns/t1") is None and rig.api.get("pods", "ns/t1") is None
    assert rig.api.get("offers", offer) is None


def test_a_new_leader_offers_at_once_before_working_through_what_the_old_one_left() -> None:
    """A standby taking over allocates from its warm cache first: the statuses of pods that ended
    while nobody led and the accepts left unprocessed (seconds of writes in `make chaos`) come after
    the first new offer. What the backlog still holds stays held: no resource is offered twice."""
    leader = Rig()
    standby = Rig(api=leader.api)
    for rig in (leader, standby):
        rig.node("n1", cpus=4)
        rig.node("n2", cpus=4)
    standby.watch()
    standby.engine.mark_all()
    leader.framework()
    leader.step()  # offers on n1 and n2
    leader.accept(leader.offer_on("n1"), task_info("t1", cpus=1))
    leader.settle()
    leader.run_pod("ns/t1")
    leader.settle()
    assert leader.state("ns/t1") == "TASK_RUNNING"
    # The leader dies: t1's pod ends, the framework accepts the offer on n2; nobody processes either.
    leader.run_pod("ns/t1", "Succeeded")
    n2_offer = leader.offer_on("n2")
    leader.accept(n2_offer, task_info("t2", cpus=1))
    standby.watch()
    calls = len(standby.api.calls)
    standby.engine.take_over()
    took_over = [c[0] for c in standby.api.calls[calls:]]
    assert took_over and set(took_over) == {"create:offers"}, took_over  # nothing of the backlog yet
    standby.watch()
    fresh = [o for k, o in standby.offers().items() if k != n2_offer]
    assert [o["spec"]["agent"] for o in fresh] == ["n1"]  # n2's resources are held by the accept
    assert fresh[0]["spec"]["resources"]["cpus"] == 4  # t1's pod ended: its cpu is free again
    standby.settle()
    assert standby.state("ns/t1") == "TASK_FINISHED"
    assert standby.task("ns/t2")["spec"]["agent"] == "n2"  # the accept the old leader left, launched


def test_a_pod_the_api_server_refuses_is_task_error_with_the_servers_words() -> None:
    """TASK_ERROR said only "Forbidden"; the framework is told why (the API server's message)."""
    rig = Rig()
    rig.node("n1")
    rig.framework()
    rig.step()
    rig.watch()
    why = 'pods "t1" is forbidden: exceeded quota: compute, requested: cpu=1, limited: cpu=0'
    rig.api.fail("create:pods", ApiError(403, "Forbidden", why))
    rig.accept(rig.offer_on("n1"), task_info("t1"))
    rig.settle()
    t = rig.task("ns/t1")
    assert t["status"]["state"] == "TASK_ERROR" and t["status"]["reason"] == "REASON_POD_REJECTED"
    assert t["status"]["message"] == f"the API server refused the pod: Forbidden: {why}"


def test_a_teardown_removes_the_frameworks_offers_with_one_request_and_frees_their_agents() -> None:
    """TEARDOWN deletes the removed framework's offers in one request (its answered accepts
    excepted), not a status patch each on the engine's loop; their agents are offered to the
    next framework at once."""
    from mesoskube.master.cache import format_time

    rig = Rig()
    for n in ("n1", "n2", "n3"):
        rig.node(n)
    rig.framework()
    rig.step()
    rig.watch()
    answered = rig.offer_on("n3")
    rig.accept(answered, task_info("t1"))
    rig.api.patch("frameworks", "ns", "fw", {"metadata": {"deletionTimestamp": format_time(rig.clock())}})
    rig.watch()
    rig.api.calls.clear()
    rig.step()
    ops = [c[0] for c in rig.api.calls]
    assert ops.count("deletecollection:offers") == 1
    assert "status:offers" not in ops
    assert {o["spec"]["agent"] for o in rig.api.objects["offers"].values()} <= {"n3"}
    rig.settle()
    assert rig.task("ns/t1") is None and rig.api.get("offers", answered) is None  # worked after: nothing
    rig.framework("fw2")
    rig.settle(advance=1.0)
    assert {o["spec"]["agent"] for o in rig.offers("fw2").values()} == {"n1", "n2", "n3"}


def test_a_teardown_rescinds_one_by_one_where_the_bulk_delete_is_refused() -> None:
    from mesoskube.master.cache import format_time

    rig = Rig()
    rig.node("n1")
    rig.framework()
    rig.step()
    rig.watch()
    offer = rig.offer_on("n1")
    rig.api.fail("deletecollection:offers", ApiError(405, "MethodNotAllowed"))
    rig.api.patch("frameworks", "ns", "fw", {"metadata": {"deletionTimestamp": format_time(rig.clock())}})
    rig.watch()
    rig.step()
    closed = rig.api.get("offers", offer)
    assert closed is None or closed["status"]["phase"] == "Rescinded"
    assert rig.engine.offers.bulk_delete is False


def test_offer_creates_still_queued_when_their_framework_is_torn_down_are_dropped() -> None:
    """Offer creates wait for the status client's token; a framework torn down meanwhile would
    still get them, and the next framework's first offer waited behind them."""
    from mesoskube.master.cache import format_time

    class ManualPool:
        def __init__(self) -> None:
            self.work: list = []

        def submit(self, fn, *args):
            self.work.append((fn, args))

        def run_all(self) -> None:
            work, self.work = self.work, []
            for fn, args in work:
                fn(*args)

    rig = Rig()
    for n in ("n1", "n2"):
        rig.node(n)
    pool = ManualPool()
    rig.engine.allocation.offer_pool = pool
    rig.framework()  # its offers decided and assumed; their creates wait in the pool
    assert len(pool.work) == 2 and not rig.api.objects["offers"]
    rig.api.patch("frameworks", "ns", "fw", {"metadata": {"deletionTimestamp": format_time(rig.clock())}})
    rig.watch()
    rig.step()  # TEARDOWN
    rig.api.calls.clear()
    pool.run_all()
    assert "create:offers" not in [c[0] for c in rig.api.calls]
    assert not rig.api.objects["offers"] and not rig.cache.offers
    rig.framework("fw2")
    rig.settle(advance=1.0)
    pool.run_all()
    rig.watch()
    assert {o["spec"]["agent"] for o in rig.offers("fw2").values()} == {"n1", "n2"}


def test_a_teardown_writes_nothing_per_task_on_the_loop_and_its_tasks_are_killed_by_their_sync() -> None:
    """TEARDOWN patched spec.kill on every task, on the engine's loop (40 s at QPS 50 for 2,000
    tasks, every framework's allocation stalled). The kill is now read from the Framework being
    deleted: the framework step only hands the tasks to the task queue."""
    from mesoskube.master.cache import format_time

    rig = Rig()
    rig.node("n1", cpus=8)
    rig.framework()
    tasks = [f"t{i}" for i in range(4)]
    rig.step(advance=1)
    rig.accept(rig.offer_on("n1"), *[task_info(t) for t in tasks])
    rig.settle()
    for t in tasks:
        rig.run_pod(f"ns/{t}")
    rig.watch()
    rig.settle()
    assert all(rig.state(f"ns/{t}") == "TASK_RUNNING" for t in tasks)
    rig.api.patch("frameworks", "ns", "fw", {"metadata": {"deletionTimestamp": format_time(rig.clock())}})
    rig.watch()
    rig.api.calls.clear()
    rig.engine.reconcile_frameworks(rig.clock())  # the framework step alone
    assert not [c for c in rig.api.calls if c[0] in ("patch:tasks", "delete:pods")]
    assert all(f"ns/{t}" in rig.engine.task_queue for t in tasks)
    rig.engine.sync_tasks(rig.clock())
    assert all(rig.api.get("pods", f"ns/{t}") is None for t in tasks)


def test_a_master_taking_over_kills_the_tasks_of_a_torn_down_framework() -> None:
    """The failover timeout's TORN_DOWN is the record: a master that takes over before every
    task was killed kills the rest from it."""
    leader = Rig()
    leader.node("n1")
    leader.framework(failoverTimeoutSeconds=0)
    t = running_task(leader, "t1", "fw", "n1")
    leader.api.patch_status("frameworks", "ns", "fw", {"status": {"phase": "TornDown"}})
    standby = Rig(api=leader.api)
    standby.node("n1")
    standby.watch()
    standby.engine.mark_all()
    standby.settle()
    assert leader.api.get("pods", t) is None
    standby.settle()
    assert standby.state(t) == "TASK_KILLED"
