"""Framework and role status and completed-task retention (status.py), from the cache's running
totals (holdings.py, tally.py) rather than a walk of every task and offer. Fake API and clock."""

from __future__ import annotations

from mesoskube import metrics
from tests.unit.enginerig import Rig, task_info


def status(rig: Rig, key: str = "ns/fw") -> dict:
    rig.engine.publish_status(rig.clock())
    rig.watch()
    return rig.api.get("frameworks", key)["status"]


def sample(metric, **labels) -> float:
    for m in metric.collect():
        for s in m.samples:
            if s.name.endswith("_total") or s.name.endswith("_created"):
                continue
            if all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {labels}")


def test_a_framework_status_counts_its_offers_tasks_and_allocation() -> None:
    rig = Rig()
    rig.node("n1", cpus=4, mem="8Gi")
    rig.node("n2", cpus=4, mem="8Gi")
    rig.framework()
    rig.step()
    st = status(rig)
    assert (st["offers"], st["tasks"], st["allocated"]["cpus"], st["dominantShare"]) == (2, 0, 8, 1.0)
    rig.accept(rig.offer_on("n1"), task_info("t1", cpus=1), filters={"refuseSeconds": 60})
    rig.settle()
    rig.run_pod("ns/t1")
    rig.settle()
    st = status(rig)
    # The task (1 cpu) and the untouched offer on n2 (4 cpus); n1's leftover is filtered.
    assert (st["offers"], st["tasks"], st["allocated"]["cpus"]) == (1, 1, 5)
    assert st["dominantShare"] == 0.625
    assert sample(metrics.tasks, state="TASK_RUNNING") == 1


def test_a_role_status_sums_its_frameworks() -> None:
    rig = Rig()
    rig.node("n1", cpus=4, mem="8Gi")
    rig.api.create("mesosroles", "", {"metadata": {"name": "*"}, "spec": {"weight": 2}})
    rig.handlers.event("mesosroles", "ADDED", rig.api.get("mesosroles", "*"))
    rig.framework()
    rig.step()
    rig.engine.publish_status(rig.clock())
    role = rig.api.get("mesosroles", "*")["status"]
    assert role == {"allocated": {"cpus": 4.0, "mem": 8192.0, "disk": 0.0, "gpus": 0.0},
                    "dominantShare": 0.5, "frameworks": 1}  # fmt: skip


def test_only_the_newest_completed_tasks_of_a_framework_are_kept() -> None:
    rig = Rig(maxCompletedTasksPerFramework=2)
    rig.node("n1", cpus=8)
    rig.framework()
    rig.step()
    names = [f"t{i}" for i in range(4)]
    rig.accept(rig.offer_on("n1"), *(task_info(n, cpus=1) for n in names))
    rig.settle()
    for n in names:
        rig.clock.advance(1)
        rig.run_pod(f"ns/{n}", "Succeeded")
        rig.settle()
    assert all(rig.state(f"ns/{n}") == "TASK_FINISHED" for n in names)
    rig.engine.publish_status(rig.clock())
    rig.watch()
    assert sorted(rig.api.names("tasks")) == ["t2", "t3"]
