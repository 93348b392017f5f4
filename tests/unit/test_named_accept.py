"""Accepts by name (issue 14, part A): the framework creates its Tasks, each naming the Offer, and
answers `taskNames`; the master checks them against the offer, all or none, and creates only the
pods. Over the emulated API with a fake clock (enginerig.py): no threads, no sleeps."""

from __future__ import annotations

from mesoskube.api.models import DEFAULT_ROLE, TaskInfo
from mesoskube.master import LABEL_MASTER_MADE
from mesoskube.master.builders import task_manifest
from mesoskube.master.writer import ApiError
from tests.unit.enginerig import Rig, task_info


def offered(**settings) -> tuple[Rig, str]:
    rig = Rig(**settings)
    rig.node("n1")
    rig.framework()
    rig.step()
    return rig, rig.offer_on("n1")


def own_task(rig: Rig, offer_key: str, name: str, cpus: float = 1, **spec: object) -> dict:
    """What the SDK creates for an accept by name: the master's own manifest, without its label."""
    offer = rig.api.get("offers", offer_key)
    fw = rig.api.get("frameworks", "ns/fw")
    info = TaskInfo.model_validate(task_info(name, cpus))
    o = offer["spec"]
    m = task_manifest(
        info,
        "fw",
        fw["metadata"]["uid"],
        o.get("role") or DEFAULT_ROLE,
        o["agent"],
        offer["metadata"]["name"],
    )
    m["spec"].update(spec)
    return rig.api.create("tasks", "ns", m)


def accept_by_name(rig: Rig, offer_key: str, *names: str) -> None:
    rig.answer(offer_key, {"type": "Accept", "taskNames": list(names)})


def writes_since(rig: Rig, mark: int) -> list[str]:
    return [
        c[0] for c in rig.api.calls[mark:] if c[0].split(":")[0] in ("create", "status", "patch", "delete")
    ]


def test_an_accept_by_name_costs_the_master_a_pod_per_task_and_the_offer_delete() -> None:
    rig, offer = offered()
    own_task(rig, offer, "t1")
    own_task(rig, offer, "t2")
    accept_by_name(rig, offer, "t1", "t2")
    rig.watch()
    mark = len(rig.api.calls)
    rig.step()
    assert sorted(writes_since(rig, mark)) == ["create:pods", "create:pods", "delete:offers"]
    assert {rig.api.get("pods", f"ns/{t}")["spec"]["nodeName"] for t in ("t1", "t2")} == {"n1"}
    assert rig.api.get("offers", offer) is None
    rig.run_pod("ns/t1")
    rig.watch()
    rig.step()
    assert rig.state("ns/t1") == "TASK_RUNNING"


def test_a_task_waiting_inside_its_offer_holds_nothing_more_and_gets_no_pod() -> None:
    rig, offer = offered()
    own_task(rig, offer, "t1", cpus=2)
    rig.watch()  # check_holdings: the Offer holds for both (recount agrees)
    rig.step()
    rig.step(advance=0.5)
    assert rig.api.get("pods", "ns/t1") is None and rig.state("ns/t1") is None
    assert rig.cache.holdings.held_on("n1")[0][0] == 8000  # the offer's 8 cpus, not 10


def test_a_short_accept_by_name_refuses_every_named_task_naming_what_was_short() -> None:
    rig, offer = offered()
    own_task(rig, offer, "t1", cpus=6)
    own_task(rig, offer, "t2", cpus=6)
    accept_by_name(rig, offer, "t1", "t2")
    rig.watch()
    rig.step()
    for t in ("ns/t1", "ns/t2"):
        assert rig.state(t) == "TASK_ERROR"
        assert "cpus" in rig.task(t)["status"]["message"]
    assert rig.api.names("pods") == set()
    assert rig.api.get("offers", offer) is None
    rig.step()
    assert rig.api.names("pods") == set()


def test_a_task_made_for_another_offer_refuses_the_whole_accept() -> None:
    rig, offer = offered()
    own_task(rig, offer, "t1")
    own_task(rig, offer, "t2", offer="some-other-offer")
    accept_by_name(rig, offer, "t1", "t2")
    rig.watch()
    rig.step()
    assert rig.state("ns/t1") == "TASK_ERROR"
    assert "t2: spec.offer is 'some-other-offer'" in rig.task("ns/t1")["status"]["message"]
    assert rig.api.names("pods") == set()


def test_a_named_task_that_does_not_exist_refuses_the_accept_naming_it() -> None:
    rig, offer = offered()
    own_task(rig, offer, "t1")
    accept_by_name(rig, offer, "t1", "ghost")
    rig.watch()
    rig.step()
    assert rig.state("ns/t1") == "TASK_ERROR"
    assert "task ghost does not exist" in rig.task("ns/t1")["status"]["message"]
    assert rig.api.names("pods") == set()


def test_an_answer_seen_before_its_tasks_reads_them_and_launches() -> None:
    rig, offer = offered()
    own_task(rig, offer, "t1")
    accept_by_name(rig, offer, "t1")
    # The Offer's watch is ahead of the Task's: show the master the answer only.
    rig.handlers.event("offers", "MODIFIED", rig.api.get("offers", offer))
    assert "ns/t1" not in rig.cache.tasks
    rig.step(watch=False)
    assert ("get:tasks",) in rig.api.calls
    assert rig.api.get("pods", "ns/t1") is not None


def test_a_pod_create_that_fails_keeps_the_offer_until_the_answer_is_worked_again() -> None:
    rig, offer = offered()
    own_task(rig, offer, "t1")
    own_task(rig, offer, "t2")
    rig.api.fail("create:pods", ApiError(503, "ServiceUnavailable"), times=2)
    accept_by_name(rig, offer, "t1", "t2")
    rig.watch()
    rig.step()
    assert rig.api.get("offers", offer) is not None, "the Offer is the record until every pod exists"
    assert offer in rig.engine.answer_queue
    rig.step(advance=rig.engine.answer_queue.backoff(0))
    assert rig.api.names("pods") == {"t1", "t2"}
    assert rig.api.get("offers", offer) is None


def test_a_master_that_takes_over_an_answered_offer_launches_its_tasks() -> None:
    rig, offer = offered()
    own_task(rig, offer, "t1")
    own_task(rig, offer, "t2")
    rig.api.fail("create:pods", ApiError(503, "ServiceUnavailable"), times=4)  # the accept and the task queue
    accept_by_name(rig, offer, "t1", "t2")
    rig.watch()
    rig.step()  # no pod made; then the old master dies
    assert rig.api.names("pods") == set()
    new = Rig(api=rig.api, allocationInterval=1.0)
    new.node("n1")
    new.engine.seed()
    new.engine.take_over()
    new.step()
    assert new.api.names("pods") == {"t1", "t2"}
    assert new.api.get("offers", offer) is None


def test_a_restarted_master_does_not_launch_a_framework_task_no_accept_named() -> None:
    """The framework created its Task and died before answering: a new master must not take the
    pod-less Task for one an earlier master launched."""
    rig, offer = offered()
    own_task(rig, offer, "t1")
    rig.watch()
    new = Rig(api=rig.api, allocationInterval=1.0)
    new.node("n1")
    new.engine.seed()
    new.engine.take_over()
    new.step()
    assert new.api.get("pods", "ns/t1") is None and new.state("ns/t1") is None
    new.answer(offer, {"type": "Decline"})
    new.watch()
    new.step()
    new.step()
    assert new.state("ns/t1") == "TASK_LOST"
    assert new.task("ns/t1")["status"]["message"].startswith(f"not launched: offer {offer.split('/')[1]}")
    assert new.api.get("pods", "ns/t1") is None


def test_an_offer_answered_without_the_task_refuses_it() -> None:
    rig, offer = offered()
    own_task(rig, offer, "t1")
    own_task(rig, offer, "t2")
    accept_by_name(rig, offer, "t2")
    rig.watch()
    rig.step()
    rig.step()
    assert rig.api.get("pods", "ns/t2") is not None
    assert rig.api.get("pods", "ns/t1") is None
    assert rig.state("ns/t1") in ("TASK_LOST", "TASK_ERROR")


def test_a_framework_task_claiming_the_masters_label_is_ignored() -> None:
    """Without the chart's policies a framework could set the label; a master that did not make
    the Task does not vouch for it."""
    rig, offer = offered()
    body = own_task(rig, offer, "t1")
    rig.api.patch(
        "tasks",
        "ns",
        "t1",
        {"metadata": {"labels": {**body["metadata"]["labels"], LABEL_MASTER_MADE: "true"}}},
    )
    rig.watch()
    rig.step()
    assert rig.state("ns/t1") == "TASK_ERROR"
    assert rig.task("ns/t1")["status"]["reason"] == "REASON_NOT_FROM_MASTER"
    assert rig.api.get("pods", "ns/t1") is None


def test_a_task_naming_another_frameworks_offer_is_refused_and_not_hidden_inside_it() -> None:
    rig, offer = offered()
    rig.framework("other")
    own_task(rig, offer, "t1", framework="other")
    rig.watch()  # check_holdings: it holds its own, not inside fw's Offer
    rig.step()
    assert rig.state("ns/t1") == "TASK_ERROR"
    assert rig.api.get("pods", "ns/t1") is None


def test_the_masters_own_tasks_carry_its_label() -> None:
    rig, offer = offered()
    rig.accept(offer, task_info("t1"))
    rig.watch()
    rig.step()
    assert rig.task("ns/t1")["metadata"]["labels"][LABEL_MASTER_MADE] == "true"


def test_a_task_whose_offer_was_deleted_unanswered_is_lost_and_frees_its_agent() -> None:
    rig, offer = offered()
    own_task(rig, offer, "t1", cpus=2)
    rig.watch()
    rig.step()
    ns, name = offer.split("/")
    rig.api.delete("offers", ns, name)  # by hand, say: the framework's accept can no longer come
    rig.watch()
    rig.step()
    assert rig.state("ns/t1") == "TASK_LOST"
    assert "is gone" in rig.task("ns/t1")["status"]["message"]
    rig.watch()
    assert rig.cache.holdings.held_on("n1")[0][0] == 0


def test_a_framework_task_waiting_inside_its_offer_does_not_get_the_offer_rescinded() -> None:
    """Found by make chaos with accepts by name (34 of 39 TASK_LOST in a run): the overcommit check
    counted the pod-less Tasks inside their unanswered Offer as taking the agent, and rescinded the
    Offer they were about to be accepted on."""
    rig, offer = offered()
    own_task(rig, offer, "t1", cpus=4)
    own_task(rig, offer, "t2", cpus=4)  # with the Offer's 8 cpus: 16 on an 8-cpu agent if both count
    rig.watch()
    rig.step(advance=2.0)  # past the overcommit check's interval
    rig.step(advance=2.0)
    assert (rig.api.get("offers", offer).get("status") or {}).get("phase", "Outstanding") == "Outstanding"
    accept_by_name(rig, offer, "t1", "t2")
    rig.watch()
    rig.step()
    assert rig.api.names("pods") == {"t1", "t2"}
