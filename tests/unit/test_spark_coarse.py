"""Coarse-grained placement (MesosCoarseGrainedSchedulerBackend), per offer round, without I/O."""

from __future__ import annotations

from collections import Counter

from mesoskube.api.models import TaskState
from mesoskube.frameworks.sdk import Offer
from mesoskube.frameworks.spark.coarse import CoarseScheduler, Decline, Launch
from mesoskube.frameworks.spark.conf import SparkConf


def offers(*specs: tuple[str, float, float], attrs: dict | None = None) -> list[Offer]:
    return [
        Offer.build(f"o-{agent}-{i}", agent, cpus=cpus, mem=mem, attributes=attrs or {})
        for i, (agent, cpus, mem) in enumerate(specs)
    ]


def coarse(**conf: str) -> CoarseScheduler:
    return CoarseScheduler(SparkConf.parse(conf), "app")


def launches(decisions) -> dict[str, list]:
    return {d.offer_id: list(d.tasks) for d in decisions if isinstance(d, Launch)}


def declines(decisions) -> dict[str, Decline]:
    return {d.offer_id: d for d in decisions if isinstance(d, Decline)}


def test_cores_max_12_executor_cores_4_gives_exactly_three_executors():
    s = coarse(**{"spark.cores.max": "12", "spark.executor.cores": "4"})
    ds = s.resource_offers(offers(("a", 8, 32768), ("b", 8, 32768), ("c", 8, 32768), ("d", 8, 32768)))
    tasks = [t for ts in launches(ds).values() for t in ts]
    assert len(tasks) == 3 and s.total_cores == 12
    assert all(t.resources.cpus == 4 and t.resources.mem == 1408 for t in tasks)
    # Round-robin: one per offer per pass, so three different agents.
    assert sorted(launches(ds)) == ["o-a-0", "o-b-1", "o-c-2"]
    # The fourth offer is declined for rejectOfferDurationForReachedMaxCores.
    d = declines(ds)["o-d-3"]
    assert d.refuse_seconds == 120 and d.reason == "reached spark.cores.max"
    # Later rounds launch nothing more.
    again = s.resource_offers(offers(("a", 4, 30000), ("e", 8, 32768)))
    assert launches(again) == {} and all(d.refuse_seconds == 120 for d in again)
    assert len(s.executors) == 3


def test_round_robin_passes_fill_offers_evenly():
    s = coarse(**{"spark.cores.max": "12", "spark.executor.cores": "4"})
    ds = s.resource_offers(offers(("a", 8, 32768), ("b", 8, 32768)))
    per_offer = {k: len(v) for k, v in launches(ds).items()}
    assert per_offer == {"o-a-0": 2, "o-b-1": 1}  # pass 1: a, b; pass 2: a (12 reached)
    s = coarse(**{"spark.executor.cores": "2"})  # no cores.max: take all that fits
    ds = s.resource_offers(offers(("a", 8, 32768), ("b", 5, 32768)))
    assert {k: len(v) for k, v in launches(ds).items()} == {"o-a-0": 4, "o-b-1": 2}
    assert s.total_cores == 12


def test_task_names_are_unique_dns_labels_with_the_prefix():
    s = coarse(**{"spark.executor.cores": "1"})
    ds = s.resource_offers(offers(("a", 3, 32768), ("b", 3, 32768)))
    names = [t.name for ts in launches(ds).values() for t in ts]
    assert len(set(names)) == 6 and all(n.startswith("app-exec-") for n in names)


def test_without_executor_cores_one_executor_per_agent_takes_what_is_left():
    s = coarse(**{"spark.cores.max": "10"})
    ds = s.resource_offers(offers(("a", 8, 32768), ("b", 8, 32768)))
    cores = sorted(t.resources.cpus for ts in launches(ds).values() for t in ts)
    assert cores == [2, 8] and s.total_cores == 10
    # A later offer for an agent that already has an executor gets none.
    s = coarse()
    s.resource_offers(offers(("a", 8, 32768)))
    assert launches(s.resource_offers(offers(("a", 4, 16000)))) == {}


def test_whole_cpus_and_memory_with_overhead_must_fit():
    s = coarse(**{"spark.executor.cores": "4"})
    ds = s.resource_offers(offers(("a", 3.9, 32768), ("b", 8, 1407), ("c", 4.5, 1408)))
    assert sorted(launches(ds)) == ["o-c-2"]
    d = declines(ds)
    assert d["o-a-0"].refuse_seconds is None and d["o-b-1"].refuse_seconds is None  # default filter


def test_unmet_constraints_are_declined_for_their_own_duration():
    s = coarse(
        **{
            "spark.mesos.constraints": "zone:a",
            "spark.mesos.rejectOfferDurationForUnmetConstraints": "300s",
        }
    )
    ds = s.resource_offers(
        [
            Offer.build("o1", "n1", cpus=8, mem=32768, attributes={"zone": "a"}),
            Offer.build("o2", "n2", cpus=8, mem=32768, attributes={"zone": "b"}),
            Offer.build("o3", "n3", cpus=8, mem=32768),
        ]
    )
    assert list(launches(ds)) == ["o1"]
    d = declines(ds)
    assert d["o2"].refuse_seconds == 300 and d["o2"].reason.startswith("unmet constraints")
    assert d["o3"].refuse_seconds == 300


def test_two_failed_executors_on_an_agent_keep_it_out_but_a_kill_does_not_count():
    s = coarse(**{"spark.executor.cores": "4"})
    ds = s.resource_offers(offers(("a", 4, 32768)))
    (first,) = launches(ds)["o-a-0"]
    ended = s.status_update(first.name, TaskState.FAILED)
    assert ended is not None and ended.failed and ended.agent_failures == 1 and s.total_cores == 0
    (second,) = launches(s.resource_offers(offers(("a", 4, 32768))))["o-a-0"]
    s.status_update(second.name, TaskState.LOST)
    assert s.agent_failures["a"] == 2 and s.blacklisted_agents() == ["a"]
    assert launches(s.resource_offers(offers(("a", 4, 32768)))) == {}
    # Another agent is fine; a KILLED executor frees cores but is no failure.
    (third,) = launches(s.resource_offers(offers(("b", 4, 32768))))["o-b-0"]
    ended = s.status_update(third.name, TaskState.KILLED)
    assert ended is not None and not ended.failed and "b" not in s.agent_failures


def test_a_terminal_executor_frees_its_cores_for_the_next_round():
    s = coarse(**{"spark.cores.max": "8", "spark.executor.cores": "4"})
    ds = s.resource_offers(offers(("a", 8, 32768)))
    names = [t.name for t in launches(ds)["o-a-0"]]
    assert len(names) == 2 and s.total_cores == 8
    s.status_update(names[0], TaskState.RUNNING)
    assert s.executors[names[0]].registered
    s.status_update(names[0], TaskState.FINISHED)
    assert s.total_cores == 4
    assert len(launches(s.resource_offers(offers(("b", 8, 32768))))["o-b-0"]) == 1
    # Updates for tasks that are not executors are ignored.
    assert s.status_update("someone-else", TaskState.FAILED) is None


def test_stopping_declines_everything_with_the_default_filter():
    s = coarse()
    s.stopping = True
    ds = s.resource_offers(offers(("a", 8, 32768), ("b", 8, 32768)))
    assert Counter(type(d).__name__ for d in ds) == {"Decline": 2}
    assert all(d.refuse_seconds is None for d in ds)


def test_gpus_up_to_gpus_max():
    s = coarse(**{"spark.executor.cores": "2", "spark.mesos.gpus.max": "3"})
    ds = s.resource_offers([Offer.build("o1", "a", cpus=8, mem=32768, gpus=2)])
    gpus = [t.resources.gpus for t in launches(ds)["o1"]]
    assert gpus == [2, 0, 0, 0]
    ds = s.resource_offers([Offer.build("o2", "b", cpus=2, mem=32768, gpus=4)])
    assert [t.resources.gpus for t in launches(ds)["o2"]] == [1]
