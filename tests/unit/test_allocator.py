"""The allocator's rules, one per test, from the Mesos semantics reference (no I/O, no clock)."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

import pytest

from mesoskube.allocator import (
    Agent,
    AllocatorConfig,
    DRFSorter,
    Filter,
    FrameworkView,
    OfferDecision,
    RandomSorter,
    RolePolicy,
    Snapshot,
    SorterKind,
    Taint,
    Toleration,
    allocate,
    dominant_share,
    tolerated,
)
from mesoskube.resources import Resources

PORTS = ((31000, 32000),)


def agent(name: str, cpus: float = 4, mem: float = 8192, *, available: Resources | None = None) -> Agent:
    total = Resources(cpus=cpus, mem=mem, disk=10000, ports=PORTS)
    return Agent(name=name, total=total, available=total if available is None else available)


def framework(
    key: str, *roles: str, suppressed: frozenset[str] = frozenset(), **held: Resources
) -> FrameworkView:
    """A framework view; `held` maps role to what the framework holds in it."""
    return FrameworkView(key=key, roles=roles or ("*",), suppressed_roles=suppressed, allocated=held)


def offers_by_framework(decisions: list[OfferDecision]) -> Counter[str]:
    return Counter(d.framework for d in decisions)


# ---------------------------------------------------------------- DRF paper worked example


@dataclass
class TaskFramework:
    """A framework with endless identical tasks, answering each offer before the next cycle.

    It launches one task per offer, as Spark's coarse backend launches one executor per offer per
    pass, and returns the rest; an offer too small for a task is declined with a filter. Taking
    every task that fits from a whole-agent offer would give the first framework the agent, and
    the DRF outcome assumes allocation grows a task at a time.
    """

    key: str
    role: str
    task: Resources
    launched: int = 0

    def holding(self) -> Resources:
        return Resources(cpus=self.task.cpus * self.launched, mem=self.task.mem * self.launched)

    def view(self) -> FrameworkView:
        return FrameworkView(key=self.key, roles=(self.role,), allocated={self.role: self.holding()})


def run_cycles(total: Resources, frameworks: list[TaskFramework], cycles: int) -> None:
    used = Resources()
    filters: list[Filter] = []
    by_key = {fw.key: fw for fw in frameworks}
    for now in range(cycles):
        node = Agent(name="node-0", total=total, available=total - used)
        snapshot = Snapshot(
            agents=(node,), frameworks=tuple(fw.view() for fw in frameworks), filters=tuple(filters)
        )
        for decision in allocate(snapshot, float(now)):
            fw = by_key[decision.framework]
            if decision.resources.contains(fw.task):
                fw.launched += 1
                used = used + fw.task
            else:
                filters.append(Filter(decision.framework, decision.agent, expires_at=now + 5.0))


@pytest.mark.parametrize("roles", [("a", "b"), ("*", "*")], ids=["users-as-roles", "frameworks-in-one-role"])
def test_drf_paper_example_gives_a_three_tasks_and_b_two_with_equal_shares(roles: tuple[str, str]) -> None:
    total = Resources(cpus=9, mem=18 * 1024)
    user_a = TaskFramework("ns/a", roles[0], Resources(cpus=1, mem=4 * 1024))
    user_b = TaskFramework("ns/b", roles[1], Resources(cpus=3, mem=1 * 1024))

    run_cycles(total, [user_a, user_b], cycles=20)

    assert (user_a.launched, user_b.launched) == (3, 2)
    assert user_a.holding() == Resources(cpus=3, mem=12 * 1024)
    assert user_b.holding() == Resources(cpus=6, mem=2 * 1024)
    assert dominant_share(user_a.holding(), total) == pytest.approx(2 / 3)
    assert dominant_share(user_b.holding(), total) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- weights, quota, minimums


def test_weights_one_to_two_give_dominant_shares_one_to_two() -> None:
    agents = tuple(agent(f"node-{i:02d}", cpus=1, mem=1024) for i in range(30))
    snapshot = Snapshot(
        agents=agents,
        frameworks=(framework("ns/heavy", "heavy"), framework("ns/light", "light")),
        roles={"heavy": RolePolicy("heavy", weight=2.0)},
    )

    decisions = allocate(snapshot, now=0.0)

    assert offers_by_framework(decisions) == {"ns/heavy": 20, "ns/light": 10}
    total = Resources(cpus=30, mem=30 * 1024)
    heavy = Resources.total(d.resources for d in decisions if d.role == "heavy")
    light = Resources.total(d.resources for d in decisions if d.role == "light")
    assert dominant_share(heavy, total) == pytest.approx(2 / 3)
    assert dominant_share(light, total) == pytest.approx(1 / 3)


def test_drf_interleaves_across_agents_within_one_call() -> None:
    agents = tuple(agent(f"node-{i}") for i in range(6))
    snapshot = Snapshot(agents=agents, frameworks=(framework("ns/x"), framework("ns/y"), framework("ns/z")))

    decisions = allocate(snapshot, now=0.0)

    assert offers_by_framework(decisions) == {"ns/x": 2, "ns/y": 2, "ns/z": 2}
    assert [d.framework for d in decisions] == ["ns/x", "ns/y", "ns/z"] * 2


def test_quota_limit_caps_the_role_and_the_rest_goes_on_to_the_next_role() -> None:
    node = Agent(
        "node-0",
        total=Resources(cpus=8, mem=16384, gpus=1, ports=PORTS),
        available=Resources(cpus=8, mem=16384, gpus=1, ports=PORTS),
    )
    # math.inf is "no limit" for a scalar; 0 is a limit of zero.
    quota = Resources(cpus=2, mem=math.inf, disk=math.inf, gpus=0)
    snapshot = Snapshot(
        agents=(node,),
        frameworks=(framework("ns/analytics", "analytics"), framework("ns/batch", "batch")),
        roles={"analytics": RolePolicy("analytics", quota_limit=quota)},
    )

    decisions = allocate(snapshot, now=0.0)

    assert decisions == [
        OfferDecision("ns/analytics", "analytics", "node-0", Resources(cpus=2, mem=16384, ports=PORTS)),
        OfferDecision("ns/batch", "batch", "node-0", Resources(cpus=6, gpus=1)),
    ]


def test_quota_headroom_counts_what_the_role_already_holds() -> None:
    snapshot = Snapshot(
        agents=(agent("node-0", cpus=8, mem=8192),),
        frameworks=(framework("ns/a", "capped", capped=Resources(cpus=3, mem=1024)),),
        roles={"capped": RolePolicy("capped", quota_limit=Resources(cpus=4, mem=2048, disk=math.inf))},
    )

    [decision] = allocate(snapshot, now=0.0)

    assert decision.resources == Resources(cpus=1, mem=1024, disk=10000, ports=PORTS)


def test_role_at_its_quota_is_skipped() -> None:
    snapshot = Snapshot(
        agents=(agent("node-0"),),
        frameworks=(
            framework("ns/a", "capped", capped=Resources(cpus=2, mem=2048)),
            framework("ns/b", "open"),
        ),
        roles={"capped": RolePolicy("capped", quota_limit=Resources(cpus=2, mem=2048))},
    )

    decisions = allocate(snapshot, now=0.0)

    assert [(d.framework, d.resources) for d in decisions] == [("ns/b", agent("node-0").available)]


def test_framework_gets_one_offer_per_agent_even_in_a_second_role() -> None:
    snapshot = Snapshot(
        agents=(agent("node-0", cpus=8, mem=8192),),
        frameworks=(framework("ns/multi", "capped", "open"), framework("ns/other", "open")),
        roles={"capped": RolePolicy("capped", quota_limit=Resources(cpus=1, mem=1024))},
    )

    decisions = allocate(snapshot, now=0.0)

    assert [(d.framework, d.role, d.resources) for d in decisions] == [
        ("ns/multi", "capped", Resources(cpus=1, mem=1024, ports=PORTS)),
        ("ns/other", "open", Resources(cpus=7, mem=7168, disk=10000)),
    ]


def test_leftover_below_min_allocatable_is_not_offered() -> None:
    tiny = agent("node-tiny", available=Resources(cpus=0.005, mem=31, ports=PORTS))
    snapshot = Snapshot(agents=(tiny,), frameworks=(framework("ns/a"),))

    assert allocate(snapshot, now=0.0) == []


def test_quota_capped_leftover_below_min_allocatable_is_not_offered() -> None:
    node = agent("node-0", available=Resources(cpus=1.005, mem=1040))
    snapshot = Snapshot(
        agents=(node,),
        frameworks=(framework("ns/a", "capped"), framework("ns/b", "open")),
        roles={"capped": RolePolicy("capped", quota_limit=Resources(cpus=1, mem=1024))},
    )

    decisions = allocate(snapshot, now=0.0)

    assert [(d.framework, d.resources) for d in decisions] == [("ns/a", Resources(cpus=1, mem=1024))]


def test_one_minimum_is_enough_and_custom_minimums_apply() -> None:
    memory_only = agent("node-0", available=Resources(mem=64))
    snapshot = Snapshot(agents=(memory_only,), frameworks=(framework("ns/a"),))

    assert [d.resources for d in allocate(snapshot, now=0.0)] == [Resources(mem=64)]
    strict = AllocatorConfig(min_allocatable=(Resources(cpus=1, mem=128),))
    assert allocate(snapshot, now=0.0, config=strict) == []


def test_agents_with_nothing_available_are_skipped() -> None:
    full = agent("node-full", available=Resources())
    ports_only = agent("node-ports", available=Resources(ports=PORTS))
    free = agent("node-free")
    snapshot = Snapshot(agents=(full, ports_only, free), frameworks=(framework("ns/a"),))

    assert [d.agent for d in allocate(snapshot, now=0.0)] == ["node-free"]


# ---------------------------------------------------------------- filters and suppression


def test_filter_keeps_agent_from_framework_until_it_expires() -> None:
    snapshot = Snapshot(
        agents=(agent("node-0"), agent("node-1")),
        frameworks=(framework("ns/a"),),
        filters=(Filter("ns/a", "node-0", expires_at=10.0),),
    )

    assert [d.agent for d in allocate(snapshot, now=9.5)] == ["node-1"]
    assert sorted(d.agent for d in allocate(snapshot, now=10.0)) == ["node-0", "node-1"]


def test_filtered_agent_goes_to_the_next_framework_even_with_a_higher_share() -> None:
    snapshot = Snapshot(
        agents=(agent("node-0"),),
        frameworks=(framework("ns/poor"), framework("ns/rich", **{"*": Resources(cpus=3)})),
        filters=(Filter("ns/poor", "node-0", expires_at=100.0),),
    )

    assert [d.framework for d in allocate(snapshot, now=0.0)] == ["ns/rich"]


def test_offer_cap_bounds_outstanding_offers_and_the_rest_go_to_other_frameworks() -> None:
    agents = tuple(agent(f"node-{i}") for i in range(10))
    capped = AllocatorConfig(max_offers_per_framework=3)
    # "a" already holds two outstanding offers: one more this cycle, then every agent goes to "b".
    a = FrameworkView(key="ns/a", outstanding_offers=2)
    b = FrameworkView(key="ns/b", outstanding_offers=0)
    counts = offers_by_framework(allocate(Snapshot(agents=agents, frameworks=(a, b)), 0.0, capped))
    assert counts == Counter({"ns/a": 1, "ns/b": 3})  # six agents stay unoffered until answers come
    alone = offers_by_framework(allocate(Snapshot(agents=agents, frameworks=(a,)), 0.0, AllocatorConfig()))
    assert alone == Counter({"ns/a": 10})  # 0 = no cap, as in Mesos


def test_suppressed_role_gets_nothing() -> None:
    snapshot = Snapshot(
        agents=(agent("node-0"), agent("node-1")),
        frameworks=(
            framework("ns/quiet", "a", suppressed=frozenset({"a"})),
            framework("ns/half", "a", "b", suppressed=frozenset({"a"})),
        ),
    )

    decisions = allocate(snapshot, now=0.0)

    assert sorted((d.framework, d.role, d.agent) for d in decisions) == [
        ("ns/half", "b", "node-0"),
        ("ns/half", "b", "node-1"),
    ]


def test_suppressed_framework_still_counts_towards_its_role_share() -> None:
    snapshot = Snapshot(
        agents=(agent("node-0"),),
        frameworks=(
            framework("ns/hog", "a", suppressed=frozenset({"a"}), a=Resources(cpus=4)),
            framework("ns/a2", "a"),
            framework("ns/b", "b"),
        ),
    )

    assert [d.framework for d in allocate(snapshot, now=0.0)] == ["ns/b"]


# ---------------------------------------------------------------- determinism


def test_ties_are_broken_by_name_whatever_the_input_order() -> None:
    agents = (agent("node-0"),)
    forward = Snapshot(agents=agents, frameworks=(framework("ns/alpha"), framework("ns/beta")))
    backward = Snapshot(agents=agents, frameworks=(framework("ns/beta"), framework("ns/alpha")))

    assert [d.framework for d in allocate(forward, now=0.0)] == ["ns/alpha"]
    assert allocate(backward, now=0.0) == allocate(forward, now=0.0)


def test_agent_shuffle_depends_on_seed_not_on_input_order() -> None:
    agents = tuple(agent(f"node-{i:02d}") for i in range(20))
    frameworks = (framework("ns/a"),)

    def order(agents: tuple[Agent, ...], seed: int) -> list[str]:
        decisions = allocate(Snapshot(agents=agents, frameworks=frameworks), 0.0, AllocatorConfig(seed=seed))
        return [d.agent for d in decisions]

    assert order(agents, 1) == order(tuple(reversed(agents)), 1)
    assert order(agents, 1) != order(agents, 2)
    assert sorted(order(agents, 1)) == [a.name for a in agents]


def test_random_sorter_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    agents = tuple(agent(f"node-{i:02d}") for i in range(40))
    snapshot = Snapshot(agents=agents, frameworks=tuple(framework(f"ns/fw-{i}") for i in range(4)))

    def run(seed: int) -> list[tuple[str, str]]:
        config = AllocatorConfig(sorter=SorterKind.RANDOM, seed=seed)
        return [(d.framework, d.agent) for d in allocate(snapshot, 0.0, config)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert len(run(7)) == 40


def test_random_sorter_ignores_shares() -> None:
    snapshot = Snapshot(
        agents=tuple(agent(f"node-{i:02d}") for i in range(40)),
        frameworks=(framework("ns/rich", **{"*": Resources(cpus=1000)}), framework("ns/poor")),
    )

    drf = offers_by_framework(allocate(snapshot, 0.0))
    rnd = offers_by_framework(allocate(snapshot, 0.0, AllocatorConfig(sorter=SorterKind.RANDOM)))

    assert drf == {"ns/poor": 40}
    assert 10 <= rnd["ns/rich"] <= 30


# ---------------------------------------------------------------- sorters


def test_dominant_share_takes_the_largest_fraction_and_ignores_absent_resources() -> None:
    total = Resources(cpus=10, mem=1000)

    assert dominant_share(Resources(cpus=2, mem=500), total) == 0.5
    assert dominant_share(Resources(cpus=2, gpus=1), total) == 0.2
    assert dominant_share(Resources(), total) == 0.0


def test_drf_sorter_orders_by_weighted_share_and_follows_allocations() -> None:
    sorter = DRFSorter(Resources(cpus=10, mem=100))
    sorter.add("b", allocation=Resources(cpus=2))
    sorter.add("a", allocation=Resources(mem=30))
    sorter.add("c", weight=4.0, allocation=Resources(cpus=4))

    assert sorter.sort() == ["c", "b", "a"]
    assert sorter.share("c") == pytest.approx(0.1)

    sorter.allocated("c", Resources(cpus=6, ports=PORTS))

    assert sorter.sort() == ["b", "c", "a"]
    assert sorter.allocation("c") == Resources(cpus=10)


def test_sorter_rejects_duplicate_clients_and_bad_weights() -> None:
    sorter = DRFSorter(Resources(cpus=1))
    sorter.add("a")

    with pytest.raises(ValueError, match="already has client 'a'"):
        sorter.add("a")
    with pytest.raises(ValueError, match="positive"):
        sorter.add("b", weight=0.0)


def test_random_sorter_favours_weight() -> None:
    sorter = RandomSorter(Resources(cpus=1), random.Random(3))
    sorter.add("light", weight=1.0)
    sorter.add("heavy", weight=3.0)

    firsts = Counter(sorter.sort()[0] for _ in range(4000))

    # Weight 3 against 1 leads three times in four.
    assert 0.72 < firsts["heavy"] / 4000 < 0.78


def test_filter_holds_while_the_agent_offers_no_more_than_was_refused() -> None:
    refused = Resources(cpus=0, mem=6144, disk=10000, ports=PORTS)
    leftover = agent("node-0", available=Resources(mem=6144, disk=10000, ports=PORTS))
    snapshot = Snapshot(
        agents=(leftover,),
        frameworks=(framework("ns/a"),),
        filters=(Filter("ns/a", "node-0", expires_at=10.0, resources=refused),),
    )
    assert allocate(snapshot, now=1.0) == []


def test_filter_passes_once_the_agent_holds_more_than_was_refused() -> None:
    # Mesos's RefusedOfferFilter: cpus freed since the refusal make a new offer worth sending.
    refused = Resources(cpus=0, mem=6144, disk=10000, ports=PORTS)
    grown = agent("node-0", available=Resources(cpus=2, mem=6144, disk=10000, ports=PORTS))
    snapshot = Snapshot(
        agents=(grown,),
        frameworks=(framework("ns/a"),),
        filters=(Filter("ns/a", "node-0", expires_at=10.0, resources=refused),),
    )
    (offer,) = allocate(snapshot, now=1.0)
    assert offer.framework == "ns/a" and offer.resources.cpus == 2


# ------------------------------------------------------------------ taints and quota edges


def test_tainted_agent_goes_only_to_frameworks_that_tolerate_it() -> None:
    tainted = Agent(
        name="gpu-0",
        total=agent("x").total,
        available=agent("x").total,
        taints=(Taint("dedicated", "gpu", "NoSchedule"), Taint("maintenance", "", "NoExecute")),
    )
    plain = FrameworkView(key="ns/a")
    half = FrameworkView(key="ns/b", tolerations=(Toleration("dedicated", "Equal", "gpu"),))
    full = FrameworkView(
        key="ns/c", tolerations=(Toleration("dedicated", "Equal", "gpu"), Toleration("maintenance", "Exists"))
    )
    decisions = allocate(Snapshot(agents=(tainted,), frameworks=(plain, half, full)), now=0.0)
    assert [d.framework for d in decisions] == ["ns/c"]
    assert allocate(Snapshot(agents=(tainted,), frameworks=(plain, half)), now=0.0) == []


@pytest.mark.parametrize(
    "toleration,taint,ok",
    [
        (Toleration("k", "Equal", "v"), Taint("k", "v", "NoSchedule"), True),
        (Toleration("k", "Equal", "v"), Taint("k", "w", "NoSchedule"), False),
        (Toleration("k", "Exists"), Taint("k", "w", "NoExecute"), True),
        (Toleration("", "Exists"), Taint("anything", "", "NoExecute"), True),
        (Toleration("k", "Exists", effect="NoSchedule"), Taint("k", "", "NoExecute"), False),
    ],
)
def test_toleration_matching_follows_kubernetes(toleration, taint, ok) -> None:
    assert tolerated((toleration,), (taint,)) is ok


def test_role_at_its_cpu_quota_gets_no_zero_cpu_offers_of_the_memory() -> None:
    """At its cpu quota a role was still offered 0 cpus and all the memory of every agent."""
    snapshot = Snapshot(
        agents=(agent("node-0"), agent("node-1")),
        frameworks=(framework("ns/a", "capped", capped=Resources(cpus=2)), framework("ns/b", "open")),
        roles={"capped": RolePolicy("capped", quota_limit=Resources(cpus=2))},
    )
    decisions = allocate(snapshot, now=0.0)
    assert {d.framework for d in decisions} == {"ns/b"}
    assert all(d.resources.cpus == 4 and d.resources.mem == 8192 for d in decisions)


def test_role_at_its_cpu_quota_gets_no_memory_of_an_agent_whose_cpus_are_used() -> None:
    """The leftover of an agent with no cpus free (its memory) went to the role at its cpu quota."""
    snapshot = Snapshot(
        agents=(agent("node-0", available=Resources(cpus=0, mem=3584)),),
        frameworks=(framework("ns/a", "capped", capped=Resources(cpus=2)),),
        roles={"capped": RolePolicy("capped", quota_limit=Resources(cpus=2, mem=math.inf, disk=math.inf,
                                                                      gpus=math.inf))},
    )  # fmt: skip
    assert allocate(snapshot, now=0.0) == []
    below = Snapshot(
        agents=snapshot.agents,
        frameworks=(framework("ns/a", "capped", capped=Resources(cpus=1)),),
        roles=snapshot.roles,
    )
    assert [d.resources.mem for d in allocate(below, now=0.0)] == [3584]  # below its quota: offered
