"""The allocation cycle: a generator per (seed, cycle number), the pipeline's stages, candidate
agents for event-triggered cycles, and pass-over reasons."""

from __future__ import annotations

from collections import Counter

import pytest

from mesoskube.allocator import allocate
from mesoskube.allocator.snapshot import Agent, AllocatorConfig, FrameworkView, Snapshot, SorterKind
from mesoskube.master.allocation import OFFER_BACKOFF_BASE, OFFER_BACKOFF_MAX
from mesoskube.resources import Resources
from tests.unit.enginerig import Rig

CPU4 = Resources(cpus=4, mem=8192)


def agents(n: int) -> tuple[Agent, ...]:
    return tuple(Agent(f"n{i:02d}", CPU4, CPU4) for i in range(n))


def test_the_random_sorter_differs_from_cycle_to_cycle() -> None:
    """Defect: re-seeded alike each cycle, one of two equal frameworks won 1,000 of 1,000 cycles."""
    snap = Snapshot(agents=agents(1), frameworks=(FrameworkView("ns/a"), FrameworkView("ns/b")))
    config = AllocatorConfig(sorter=SorterKind.RANDOM, seed=7)
    wins = Counter(allocate(snap, 0.0, config, cycle=c)[0].framework for c in range(1, 1001))
    assert 400 < wins["ns/a"] < 600, wins
    # Replayable: the same (seed, cycle) gives the same decisions.
    assert allocate(snap, 0.0, config, cycle=42) == allocate(snap, 0.0, config, cycle=42)


def test_the_agent_shuffle_differs_from_cycle_to_cycle() -> None:
    """Defect: with the offer cap, every framework saw the same agents first forever."""
    snap = Snapshot(agents=agents(20), frameworks=(FrameworkView("ns/a"),))
    config = AllocatorConfig(max_offers_per_framework=1)
    first = {allocate(snap, 0.0, config, cycle=c)[0].agent for c in range(1, 101)}
    assert len(first) > 10


def test_the_engine_numbers_its_cycles() -> None:
    rig = Rig(sorter="random")
    rig.node("n1")
    rig.framework()
    before = rig.engine.cycle
    rig.step(advance=1)
    rig.step(advance=1)
    assert rig.engine.cycle == before + 2


def test_an_event_triggered_cycle_looks_only_at_candidate_agents_the_interval_sweeps_all() -> None:
    rig = Rig(allocationInterval=10)
    for i in range(5):
        rig.node(f"n{i}")
    rig.framework()
    rig.step(advance=10)
    assert rig.engine.last_cycle.kind == "sweep" and rig.engine.last_cycle.agents == 5
    rig.answer(rig.offer_on("n3"), {"type": "Decline", "filters": {"refuseSeconds": 0}})
    rig.watch()
    rig.step(advance=0.1)  # the decline frees n3: a cycle over n3 alone
    assert rig.engine.last_cycle.kind == "candidates" and rig.engine.last_cycle.agents == 1
    assert rig.offer_on("n3")
    rig.step(advance=10)
    assert rig.engine.last_cycle.kind == "sweep" and rig.engine.last_cycle.agents == 5


def test_a_node_heartbeat_triggers_no_allocation() -> None:
    """Defect: every node heartbeat triggered a full allocation."""
    rig = Rig(allocationInterval=10)
    rig.node("n1")
    rig.framework()
    rig.step(advance=10)
    cycle = rig.engine.cycle
    rig.node("n1")  # a new resourceVersion, nothing the master reads changed
    rig.step(advance=0.1)
    assert rig.engine.cycle == cycle


def test_passed_over_frameworks_and_agents_are_counted_by_reason() -> None:
    rig = Rig(allocationInterval=10)
    rig.node("n1")
    rig.node("n2", ready=False)
    rig.framework()
    rig.step(advance=10)
    rig.answer(rig.offer_on("n1"), {"type": "Decline", "filters": {"refuseSeconds": 60}})
    rig.watch()
    rig.step(advance=10)
    passed = rig.engine.last_cycle.passed_over
    assert passed["filtered"] == 1 and passed["no_eligible_framework"] == 1
    assert passed["agent_not_ready"] == 1


def test_an_offer_is_assumed_in_the_cache_and_forgotten_when_its_create_fails() -> None:
    from mesoskube.master.writer import ApiError

    rig = Rig(allocationInterval=10)
    rig.node("n1")
    rig.api.fail("create:offers", ApiError(503, "ServiceUnavailable"))
    rig.framework()  # subscribed, and the cycle right after tries to offer n1
    assert rig.api.names("offers") == set() and rig.cache.offers == {}
    assert rig.engine.allocation.offers_in_flight == 0
    rig.step(advance=OFFER_BACKOFF_BASE)  # the failure asked for a cycle over n1 again
    assert [o["spec"]["agent"] for o in rig.offers().values()] == ["n1"]
    assert not rig.cache.assumed["offers"], "the watch's copy replaced the assumed one"


def test_failed_offer_creates_hold_the_next_cycles_back_doubling_until_a_create_succeeds() -> None:
    """Defect: during an outage the failed agents came back as candidates of the next event cycle,
    every 0.2 s, up to maxOffersPerFramework creates per framework each time."""
    from mesoskube.master.writer import ApiError

    rig = Rig(allocationInterval=10)
    rig.node("n1")
    rig.node("n2")
    rig.api.fail("create:offers", ApiError(503, "ServiceUnavailable"), times=6)  # three cycles' worth
    a = rig.engine.allocation

    def creates() -> int:
        return sum(1 for call in rig.api.calls if call[0] == "create:offers")

    rig.framework()  # cycle 1: both creates fail, one hold for the cycle (not one per create)
    start = rig.clock()
    assert creates() == 2 and a.held_until == start + OFFER_BACKOFF_BASE
    assert rig.engine.next_wake_in() == pytest.approx(OFFER_BACKOFF_BASE)  # the loop sleeps, not spins
    rig.step(advance=OFFER_BACKOFF_BASE / 2)
    assert creates() == 2, "held"
    rig.step(advance=OFFER_BACKOFF_BASE / 2)  # cycle 2 fails: the hold doubles
    assert creates() == 4 and a.held_until == rig.clock() + 2 * OFFER_BACKOFF_BASE
    rig.step(advance=OFFER_BACKOFF_BASE)
    assert creates() == 4, "held"
    rig.step(advance=OFFER_BACKOFF_BASE)  # cycle 3 fails: doubles again
    assert creates() == 6 and a.held_until == rig.clock() + 4 * OFFER_BACKOFF_BASE
    rig.step(advance=4 * OFFER_BACKOFF_BASE)  # cycle 4: the API answers again
    assert sorted(o["spec"]["agent"] for o in rig.offers().values()) == ["n1", "n2"]
    assert a.held_until == 0.0


def test_an_offer_the_api_server_refuses_for_good_holds_no_other_agent_back() -> None:
    """A 422 (an agent's labels the Offer schema refuses, say) is that Offer's trouble, not the API
    server's: no hold, and that agent waits for the interval's sweep, not the next event cycle."""
    from mesoskube.master.writer import ApiError

    rig = Rig(allocationInterval=10)
    rig.node("n1")
    rig.node("n2")
    rig.api.fail("create:offers", ApiError(422, "Invalid"))
    rig.framework()  # one of the two creates is refused
    a = rig.engine.allocation
    assert a.held_until == 0.0 and len(rig.offers()) == 1
    assert not a.allocation_requested


def test_a_late_success_of_an_earlier_cycle_does_not_lift_a_later_cycles_hold() -> None:
    from mesoskube.master.writer import ApiError

    rig = Rig(allocationInterval=10)
    rig.node("n1")
    a = rig.engine.allocation
    a.offer_pool = pool = DeferredPool()
    rig.framework()  # cycle 1 decides an offer on n1; its create waits in the pool
    early = pool.pending.pop()
    rig.node("n2")
    rig.api.fail("create:offers", ApiError(503, "ServiceUnavailable"))
    rig.step(advance=0.1)  # cycle 2: n2's create fails
    pool.run()
    assert a.held_until > rig.clock()
    early[0](*early[1])  # cycle 1's create succeeds only now
    assert a.held_until > rig.clock(), "an older success says nothing about the API server now"


def test_the_hold_after_failed_offer_creates_is_capped() -> None:
    from mesoskube.master.writer import ApiError

    rig = Rig(allocationInterval=10)
    rig.node("n1")
    rig.api.fail("create:offers", ApiError(503, "ServiceUnavailable"), times=12)
    rig.framework()
    a = rig.engine.allocation
    for _ in range(11):
        rig.step(advance=OFFER_BACKOFF_MAX)
    assert a.held_until - rig.clock() == OFFER_BACKOFF_MAX


class DeferredPool:
    """An executor that runs what it was given only when told (EMULATED concurrency, no threads)."""

    def __init__(self) -> None:
        self.pending: list = []

    def submit(self, fn, *args):
        self.pending.append((fn, args))

    def run(self) -> None:
        pending, self.pending = self.pending, []
        for fn, args in pending:
            fn(*args)


def test_offer_writes_run_off_the_cycle_and_the_next_cycle_counts_them_while_under_way() -> None:
    rig = Rig(allocationInterval=10)
    rig.node("n1")
    rig.engine.allocation.offer_pool = pool = DeferredPool()
    rig.framework()
    assert rig.api.names("offers") == set() and len(pool.pending) == 1, "the cycle did not wait"
    assert rig.engine.allocation.offers_in_flight == 1
    agent = rig.engine.snapshot(rig.clock()).agents[0]
    assert agent.available.cpus == 0, "the assumed offer holds n1"
    rig.step(advance=10)
    assert len(pool.pending) == 1, "n1 is not offered twice"
    pool.run()
    rig.watch()
    assert len(rig.api.names("offers")) == 1 and rig.engine.allocation.offers_in_flight == 0


def test_a_framework_status_write_triggers_no_full_cycle_but_lifting_suppress_does() -> None:
    """The master's own status writes on a Framework came back as events that each asked for a
    full allocation, so event-triggered cycles over candidates never happened."""
    rig = Rig(allocationInterval=10)
    rig.node("n1")
    rig.framework()
    rig.step(advance=10)
    cycle = rig.engine.cycle
    rig.api.patch_status("frameworks", "ns", "fw", {"status": {"tasks": 0, "offers": 1}})
    rig.watch()
    rig.step(advance=0.1)
    assert rig.engine.cycle == cycle
    rig.api.patch("frameworks", "ns", "fw", {"spec": {"suppress": True}})
    rig.watch()
    rig.step(advance=0.1)
    rig.api.patch("frameworks", "ns", "fw", {"spec": {"suppress": False}})
    rig.watch()
    rig.step(advance=0.1)
    assert rig.engine.cycle > cycle and rig.engine.last_cycle.kind == "sweep"


def test_an_event_triggered_cycle_rebuilds_only_the_agents_that_changed() -> None:
    """Mesos's allocation candidates: a decline frees one agent; the next cycle rebuilds that
    agent's view alone (the cache reported it changed) and offers it, not the other 19."""
    rig = Rig(allocationInterval=10)
    for i in range(20):
        rig.node(f"n{i:02d}")
    rig.framework()
    rig.step(advance=10)
    rig.step(advance=0.1)  # the sweep's offers came back on the watch: their agents changed once more
    rig.answer(rig.offer_on("n03"), {"type": "Decline", "filters": {"refuseSeconds": 0}})
    rig.watch()
    rig.step(advance=0.1)
    report = rig.engine.last_cycle
    assert report.kind == "candidates" and report.agents == 1 and report.offers == 1
    assert report.refreshed == 1, report
    assert rig.offer_on("n03")


def test_pass_over_reasons_are_counted_in_the_metric() -> None:
    from prometheus_client import REGISTRY

    def count(reason: str) -> float:
        return REGISTRY.get_sample_value("mesoskube_allocation_passed_over_total", {"reason": reason}) or 0.0

    rig = Rig(allocationInterval=10)
    rig.node("n1")
    rig.node("n2", ready=False)
    rig.framework()
    rig.step(advance=10)
    rig.answer(rig.offer_on("n1"), {"type": "Decline", "filters": {"refuseSeconds": 60}})
    rig.watch()
    before = {r: count(r) for r in ("filtered", "no_eligible_framework", "agent_not_ready")}
    rig.step(advance=10)
    assert {r: count(r) - n for r, n in before.items()} == {
        "filtered": 1,
        "no_eligible_framework": 1,
        "agent_not_ready": 1,
    }


def test_a_framework_subscribing_just_after_a_cycle_gets_its_offers_without_the_pipelined_gap() -> None:
    """A subscription asks for a cycle after MIN_ALLOCATION_GAP, not the pipelined engine's 0.2 s
    between event-triggered cycles: time to first offer is what a framework's user waits for."""
    from mesoskube.master.engine import MIN_ALLOCATION_GAP, PIPELINED_SWEEP_GAP
    from tests.unit.test_pipelined import ManualPool

    rig = Rig(allocationInterval=10, work_pool=ManualPool())
    rig.node("n1")
    rig.node("n2")
    rig.framework("a")  # subscribed; the cycle right after offers it both agents
    assert len(rig.offers("a")) == 2
    a_cycles = rig.engine.cycle
    rig.clock.advance(2 * MIN_ALLOCATION_GAP)  # well inside the pipelined gap
    rig.framework("b")
    assert 2 * MIN_ALLOCATION_GAP < PIPELINED_SWEEP_GAP
    assert rig.engine.cycle == a_cycles + 1, "the subscription's cycle ran at once"
