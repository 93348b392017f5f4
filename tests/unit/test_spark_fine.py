"""Fine-grained placement (MesosFineGrainedSchedulerBackend), per offer round, without I/O."""

from __future__ import annotations

from mesoskube.api.models import TaskState
from mesoskube.frameworks.sdk import Offer
from mesoskube.frameworks.spark.coarse import Decline, Launch
from mesoskube.frameworks.spark.conf import SparkConf
from mesoskube.frameworks.spark.fine import FineScheduler
from mesoskube.frameworks.spark.workload import EmulatedSparkTask


def fine(**conf: str) -> FineScheduler:
    return FineScheduler(SparkConf.parse({"spark.mesos.coarse": "false", **conf}), "app")


def ready(n: int, stage: int = 0, seconds: float = 2.0) -> list[EmulatedSparkTask]:
    return [EmulatedSparkTask(stage, i, seconds) for i in range(n)]


def by_offer(decisions) -> dict[str, Launch | Decline]:
    return {d.offer_id: d for d in decisions}


def test_first_launch_on_an_agent_brings_its_executor_and_tasks_use_the_rest():
    s = fine()
    rnd = s.resource_offers([Offer.build("o1", "a", cpus=4, mem=8192)], ready(10))
    (launch,) = rnd.decisions
    assert isinstance(launch, Launch) and launch.refuse_seconds == 1
    executor, *tasks = launch.tasks
    assert executor.resources.cpus == 1.0 and executor.resources.mem == 1408 and executor.runSeconds is None
    assert len(tasks) == 3  # 4 cpus - 1 for the executor
    for t in tasks:
        assert t.resources.cpus == 1 and t.resources.mem == 0
        assert t.executor == executor.name and t.runSeconds == 2.0
    assert [t for t, _ in rnd.launched] == ready(10)[:3]
    assert s.executors["a"].task_id == executor.name


def test_an_agent_with_an_executor_uses_all_its_cpus_and_needs_no_memory():
    s = fine()
    s.resource_offers([Offer.build("o1", "a", cpus=2, mem=8192)], ready(1))
    rnd = s.resource_offers([Offer.build("o2", "a", cpus=3, mem=0)], ready(5, stage=1))
    (launch,) = rnd.decisions
    assert isinstance(launch, Launch)
    assert len(launch.tasks) == 3 and all(t.labels["spark-role"] == "task" for t in launch.tasks)
    assert rnd.new_executors == []


def test_unusable_and_idle_offers_are_declined_with_the_default_filter():
    s = fine()
    rnd = s.resource_offers(
        [
            Offer.build("small-mem", "a", cpus=8, mem=1000),  # executor memory does not fit
            Offer.build("small-cpu", "b", cpus=1.5, mem=8192),  # executor + one task does not fit
            Offer.build("ok", "c", cpus=8, mem=8192),
        ],
        ready(0),
    )
    d = by_offer(rnd.decisions)
    assert all(isinstance(x, Decline) and x.refuse_seconds is None for x in d.values())
    assert d["ok"].reason == "no ready task"
    assert rnd.launched == [] and s.executors == {}


def test_ready_tasks_are_dealt_round_robin_over_offers():
    s = fine(**{"spark.task.cpus": "2", "spark.mesos.mesosExecutor.cores": "0.5"})
    rnd = s.resource_offers(
        [Offer.build("o1", "a", cpus=8, mem=8192), Offer.build("o2", "b", cpus=4.5, mem=8192)], ready(5)
    )
    d = by_offer(rnd.decisions)
    a_tasks = [t for t in d["o1"].tasks if t.labels.get("spark-role") == "task"]
    b_tasks = [t for t in d["o2"].tasks if t.labels.get("spark-role") == "task"]
    # a: 7 worker cores -> 3 tasks of 2; b: 4 -> 2 tasks; dealt a, b, a, b, a.
    assert [t.name for t in a_tasks] == ["app-s0t0a0", "app-s0t2a0", "app-s0t4a0"]
    assert [t.name for t in b_tasks] == ["app-s0t1a0", "app-s0t3a0"]
    assert [t.id for t, _ in rnd.launched] == [t.id for t in ready(5)]  # in ready order


def test_constraints_decline_for_the_unmet_duration():
    s = fine(**{"spark.mesos.constraints": "zone:a", "spark.mesos.rejectOfferDuration": "60s"})
    rnd = s.resource_offers(
        [
            Offer.build("o1", "a", cpus=4, mem=8192, attributes={"zone": "b"}),
            Offer.build("o2", "b", cpus=4, mem=8192, attributes={"zone": "a"}),
        ],
        ready(2),
    )
    d = by_offer(rnd.decisions)
    assert isinstance(d["o1"], Decline) and d["o1"].refuse_seconds == 60
    assert isinstance(d["o2"], Launch)


def test_a_lost_executor_returns_its_tasks_and_the_agent_gets_a_new_one():
    s = fine()
    rnd = s.resource_offers([Offer.build("o1", "a", cpus=3, mem=8192)], ready(2))
    executor = rnd.decisions[0].tasks[0].name
    assert s.status_update(executor, TaskState.RUNNING) is None
    orphans = s.status_update(executor, TaskState.LOST)
    assert sorted(orphans) == ["app-s0t0a0", "app-s0t1a0"]
    assert "a" not in s.executors
    rnd = s.resource_offers([Offer.build("o2", "a", cpus=3, mem=8192)], ready(1, stage=1))
    assert rnd.new_executors and rnd.new_executors[0].task_id != executor


def test_stopping_declines_everything():
    s = fine()
    s.stopping = True
    rnd = s.resource_offers([Offer.build("o1", "a", cpus=8, mem=8192)], ready(3))
    assert [type(d) for d in rnd.decisions] == [Decline] and rnd.launched == []
