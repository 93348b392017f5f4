"""The allocator's hot loop was rewritten for speed (plain floats in the sorters, an incremental
DRF order, agents past the point where no framework can be offered any more counted without a
visit). Its decisions must not change: on random snapshots it makes exactly the decisions of the
allocator before (tests/unit/reference/, kept verbatim) and counts the same pass-overs."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesoskube.allocator import (
    Agent,
    AllocatorConfig,
    Filter,
    FrameworkView,
    RolePolicy,
    Snapshot,
    SorterKind,
    Taint,
    Toleration,
    allocate,
)
from mesoskube.resources import Resources
from tests.unit.reference.core import allocate as reference_allocate

# Reasons the reference did not count (it passed these over silently).
NEW_REASONS = {"untolerated_taints", "role_at_quota", "quota_leftover_below_min"}
ROLES = ["*", "r1", "r2"]
TAINTS = [Taint("gpu"), Taint("spot", "yes")]
TOLERATIONS = [Toleration("gpu", "Exists"), Toleration("spot", "Equal", "yes"), Toleration(operator="Exists")]
PORTS = [(), ((31000, 31000),), ((31000, 31010),), ((31000, 31004), (31008, 31010))]


def scalars(max_cpus: int = 8000, max_mem: int = 16000) -> st.SearchStrategy[Resources]:
    return st.builds(
        lambda c, m, d, g: Resources(c / 1000, m, d, g),
        st.integers(0, max_cpus),
        st.integers(0, max_mem),
        st.sampled_from([0, 0, 100]),
        st.sampled_from([0, 0, 1]),
    )


@st.composite
def agents(draw: st.DrawFn) -> tuple[Agent, ...]:
    out = []
    for i in range(draw(st.integers(0, 12))):
        total = Resources(
            draw(st.integers(1, 8)), draw(st.integers(1, 16)) * 1024, 100, ports=((31000, 31010),)
        )
        free = draw(scalars(int(total.cpus * 1000), int(total.mem)))
        available = Resources(free.cpus, free.mem, free.disk, free.gpus, draw(st.sampled_from(PORTS)))
        taints = tuple(draw(st.lists(st.sampled_from(TAINTS), max_size=2, unique=True)))
        out.append(Agent(f"a{i:02d}", total, available, taints=taints))
    return tuple(out)


@st.composite
def frameworks(draw: st.DrawFn) -> tuple[FrameworkView, ...]:
    out = []
    for i in range(draw(st.integers(0, 5))):
        roles = tuple(draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=3, unique=True)))
        suppressed = frozenset(draw(st.lists(st.sampled_from(roles), max_size=1)))
        held = {r: draw(scalars(20000, 40000)) for r in draw(st.lists(st.sampled_from(ROLES), max_size=2))}
        tolerations = tuple(draw(st.lists(st.sampled_from(TOLERATIONS), max_size=2, unique=True)))
        out.append(
            FrameworkView(
                key=f"ns/f{i}",
                roles=roles,
                suppressed_roles=suppressed,
                allocated=held,
                outstanding_offers=draw(st.integers(0, 3)),
                tolerations=tolerations,
            )
        )
    return tuple(out)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    the_agents = draw(agents())
    the_frameworks = draw(frameworks())
    roles = {}
    for role in draw(st.lists(st.sampled_from(ROLES), max_size=3, unique=True)):
        quota = None
        if draw(st.booleans()):
            cpus, mem = (
                draw(st.sampled_from([0, 1, 4, 12, math.inf])),
                draw(st.sampled_from([0, 2048, math.inf])),
            )
            quota = Resources(cpus=cpus, mem=mem, disk=math.inf, gpus=math.inf)
        roles[role] = RolePolicy(role, weight=draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])), quota_limit=quota)
    filters = []
    if the_agents and the_frameworks:
        for _ in range(draw(st.integers(0, 8))):
            refused = draw(st.one_of(st.none(), scalars()))
            filters.append(
                Filter(
                    draw(st.sampled_from(the_frameworks)).key,
                    draw(st.sampled_from(the_agents)).name,
                    draw(st.sampled_from([0.5, 2.0])),
                    refused,
                )
            )
    total = draw(st.one_of(st.none(), st.just(Resources(64, 256 * 1024, 10000, 4))))
    return Snapshot(the_agents, the_frameworks, roles, tuple(filters), total)


configs = st.builds(
    AllocatorConfig,
    min_allocatable=st.sampled_from(
        [
            AllocatorConfig().min_allocatable,
            (),
            (Resources(cpus=1),),
            (Resources(ports=((31000, 31000),)), Resources(mem=1024)),
        ]
    ),
    sorter=st.sampled_from([SorterKind.DRF, SorterKind.RANDOM]),
    seed=st.integers(0, 3),
    max_offers_per_framework=st.sampled_from([0, 1, 2, 3, 5]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), configs, st.integers(0, 5))
def test_the_allocator_decides_as_before(snapshot: Snapshot, config: AllocatorConfig, cycle: int) -> None:
    passed: dict[str, int] = {}
    before: dict[str, int] = {}
    decisions = allocate(snapshot, 1.0, config, cycle, passed)
    assert decisions == reference_allocate(snapshot, 1.0, config, cycle, before)
    assert {k: v for k, v in passed.items() if k not in NEW_REASONS} == before


def test_agents_past_the_last_possible_offer_are_counted_without_a_visit() -> None:
    """50 agents, two frameworks with one offer left each: two offers (DRF puts the one not yet
    offered first), then the other 48 agents are passed over as a visit would pass them (each
    framework at its cap), the count the allocator before made by visiting every agent."""
    total = Resources(4, 8192)
    snap = Snapshot(
        agents=tuple(Agent(f"a{i:02d}", total, total) for i in range(50)),
        frameworks=(FrameworkView("ns/a", outstanding_offers=2), FrameworkView("ns/b", outstanding_offers=2)),
    )
    config = AllocatorConfig(max_offers_per_framework=3)
    passed: dict[str, int] = {}
    before: dict[str, int] = {}
    assert len(allocate(snap, 0.0, config, 1, passed)) == 2
    reference_allocate(snap, 0.0, config, 1, before)
    assert passed == before == {"offer_cap": 48 * 2, "no_eligible_framework": 48}


def test_frameworks_passed_over_for_taints_and_roles_at_quota_are_counted() -> None:
    total = Resources(4, 8192)
    snap = Snapshot(
        agents=(Agent("a0", total, total, taints=(Taint("gpu"),)), Agent("a1", total, total)),
        frameworks=(FrameworkView("ns/a", roles=("full",)), FrameworkView("ns/b")),
        roles={"full": RolePolicy("full", quota_limit=Resources(cpus=0, mem=0))},
    )
    passed: dict[str, int] = {}
    decisions = allocate(snap, 0.0, AllocatorConfig(), 1, passed)
    assert [(d.framework, d.agent) for d in decisions] == [("ns/b", "a1")]
    # a1: role "*" sorts first and offers it to ns/b; a0: ns/b does not tolerate it, "full" is at quota
    assert passed == {"role_at_quota": 1, "untolerated_taints": 1, "no_eligible_framework": 1}
