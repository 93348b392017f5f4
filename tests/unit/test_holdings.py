"""Held resources tracked incrementally (master/holdings.py): after any sequence of cache changes
the totals equal a full recount, and the allocation cycle's kept agent views equal a snapshot
rebuilt from every task and offer; an event-triggered snapshot walks no task, offer or pod and
rebuilds only the agents that changed."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mesoskube.master.cache import Cache
from mesoskube.master.engine import Engine
from mesoskube.resources import Resources
from mesoskube.settings import Settings
from tests.unit.reference.recount import recount
from tests.unit.reference.snapshot import full_snapshot

AGENTS = ["n0", "n1", "n2"]
TASKS = ["ns/t0", "ns/t1", "ns/t2", "ns/t3"]
OFFERS = ["ns/o0", "ns/o1", "ns/o2"]
FRAMEWORKS = ["f0", "f1"]
ROLES = [None, "r1", "r2"]
STATES = [None, "TASK_STAGING", "TASK_RUNNING", "TASK_UNREACHABLE", "TASK_FINISHED", "TASK_KILLED"]
PHASES = [None, "Outstanding", "Rescinded", "Expired"]
PORTS = [None, "31000", "31000-31002", "31001,31005"]

resources = st.builds(
    lambda c, m, g, p: {"cpus": c / 1000, "mem": m / 1000, "gpus": g, **({"ports": p} if p else {})},
    st.integers(0, 4000),
    st.integers(0, 64000),
    st.sampled_from([0, 0, 1]),
    st.sampled_from(PORTS),
)
ops = st.one_of(
    st.tuples(
        st.just("node"),
        st.sampled_from(AGENTS),
        st.integers(1, 8),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    st.tuples(st.just("delete_node"), st.sampled_from(AGENTS)),
    st.tuples(
        st.just("pod"),
        st.sampled_from([*TASKS, "ns/foreign"]),
        st.sampled_from([*AGENTS, None]),
        st.sampled_from(["Pending", "Running", "Succeeded"]),
        st.integers(0, 2000),
        st.sampled_from([None, 31000, 31001]),
    ),
    st.tuples(st.just("delete_pod"), st.sampled_from([*TASKS, "ns/foreign"])),
    st.tuples(
        st.just("task"),
        st.sampled_from(["upsert", "assume", "stale"]),
        st.sampled_from(TASKS),
        st.sampled_from(FRAMEWORKS),
        st.sampled_from(ROLES),
        st.sampled_from(AGENTS),
        resources,
        st.sampled_from(STATES),
    ),
    st.tuples(
        st.just("offer"),
        st.sampled_from(["upsert", "assume", "stale"]),
        st.sampled_from(OFFERS),
        st.sampled_from(FRAMEWORKS),
        st.sampled_from(ROLES),
        st.sampled_from(AGENTS),
        resources,
        st.sampled_from(PHASES),
    ),
    st.tuples(
        st.just("drop"),
        st.sampled_from(["tasks", "offers"]),
        st.sampled_from(["delete", "pop", "forget"]),
        st.sampled_from(TASKS + OFFERS),
    ),
    st.tuples(
        st.just("framework"),
        st.sampled_from(FRAMEWORKS),
        st.booleans(),
        st.sampled_from([None, ["r1"], ["r1", "r2"]]),
        st.booleans(),
    ),
)


class World:
    """A cache fed the changes the watch and the engine make, with resourceVersions that grow
    (a "stale" change reuses an old one: the cache must drop it, and the totals must not move)."""

    def __init__(self) -> None:
        self.cache = Cache()
        self.engine = Engine(
            writer=None, settings=Settings(agentSelector="agent"), cache=self.cache, workers=0
        )  # type: ignore[arg-type]
        self.rv = 100

    def next_rv(self, stale: bool = False) -> str:
        self.rv += 1
        return str(self.rv - 50 if stale else self.rv)

    def apply(self, op: tuple) -> None:
        kind, *args = op
        c = self.cache
        if kind == "node":
            name, cpus, ready, cordoned, labelled = args
            c.upsert_node(
                {
                    "metadata": {
                        "name": name,
                        "resourceVersion": self.next_rv(),
                        "labels": {"agent": "yes"} if labelled else {},
                    },
                    "spec": {"unschedulable": cordoned},
                    "status": {
                        "allocatable": {"cpu": str(cpus), "memory": "16Gi"},
                        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    },
                }
            )
        elif kind == "delete_node":
            c.delete_node(args[0])
        elif kind == "pod":
            key, node, phase, mcpu, port = args
            ns, name = key.split("/")
            container: dict = {"resources": {"requests": {"cpu": f"{mcpu}m"}}}
            if port:
                container["ports"] = [{"hostPort": port}]
            spec: dict = {"containers": [container]}
            if node:
                spec["nodeName"] = node
            body = {
                "metadata": {"name": name, "namespace": ns, "resourceVersion": self.next_rv()},
                "spec": spec,
                "status": {"phase": phase},
            }
            c.upsert_pod(body, ours=key != "ns/foreign")
        elif kind == "delete_pod":
            c.delete_pod(args[0], ours=args[0] != "ns/foreign")
        elif kind in ("task", "offer"):
            how, key, fw, role, agent, res, state = args
            ns, name = key.split("/")
            spec = {"framework": fw, "agent": agent, "resources": res, **({"role": role} if role else {})}
            status = (
                ({"state": state} if state else {}) if kind == "task" else ({"phase": state} if state else {})
            )
            body = {
                "metadata": {"name": name, "namespace": ns, "resourceVersion": self.next_rv(how == "stale")},
                "spec": spec,
                "status": status,
            }
            store = f"{kind}s"
            if how == "assume":
                c.assume(store, body)
            else:
                c.upsert(store, body)
        elif kind == "drop":
            store, how, key = args
            getattr(c, how)(store, key)
        elif kind == "framework":
            name, subscribed, roles, suppress = args
            spec: dict = {"suppress": suppress}
            if roles:
                spec["roles"] = roles
            c.upsert(
                "frameworks",
                {
                    "metadata": {"name": name, "namespace": "ns", "resourceVersion": self.next_rv()},
                    "spec": spec,
                    "status": {"phase": "Subscribed" if subscribed else "Disconnected"},
                },
            )

    def check(self) -> None:
        assert self.cache.holdings.state() == recount(self.cache)
        a = self.engine.allocation
        full = full_snapshot(self.cache, a.agent_matches, a.port_ranges, {}, 0.0, passed=(p_full := {}))
        view = a.cache_view(passed=(p_view := {}))
        assert sorted(view.agents, key=lambda x: x.name) == sorted(full.agents, key=lambda x: x.name)
        assert view.frameworks == full.frameworks
        assert p_view == p_full
        total = Resources.total(x.total for x in full.agents)
        assert view.total == Resources(total.cpus, total.mem, total.disk, total.gpus)
        for agent in AGENTS:  # an event-triggered view over one candidate
            only = full_snapshot(self.cache, a.agent_matches, a.port_ranges, {}, 0.0, only={agent})
            assert a.cache_view(only={agent}) == replace(only, roles=view.roles)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, max_size=40))
@example([("pod", "ns/foreign", "n0", "Running", 1000, None), ("delete_pod", "ns/foreign")])
@example([("pod", "ns/t0", "n0", "Running", 1000, 31000), ("pod", "ns/t0", "n1", "Running", 1000, None)])
def test_incremental_totals_equal_a_full_recount_after_any_changes(changes: list[tuple]) -> None:
    world = World()
    for agent in AGENTS:  # agents to start from, so that most changes land on an offered one
        world.apply(("node", agent, 4, True, False, True))
    for op in changes:
        world.apply(op)
        world.check()


class NoWalk(dict):
    """A store that fails the test if anything iterates it."""

    def _walked(self, *_):
        raise AssertionError("the snapshot walked every object of a store")

    __iter__ = items = values = keys = _walked  # type: ignore[assignment]


def test_a_snapshot_walks_no_task_offer_or_pod_and_an_event_rebuilds_only_the_changed_agent() -> None:
    world = World()
    for i in range(50):
        world.apply(("node", f"n{i}", 8, True, False, True))
    world.apply(("framework", "f0", True, None, False))
    for i in range(50):
        world.apply(("task", "upsert", f"ns/t{i}", "f0", None, f"n{i}", {"cpus": 1}, "TASK_RUNNING"))
        world.apply(("pod", f"ns/t{i}", f"n{i}", "Running", 1000, None))
        world.apply(("offer", "upsert", f"ns/o{i}", "f0", None, f"n{i}", {"cpus": 2}, None))
    a = world.engine.allocation
    a.snapshot(0.0)
    assert a.refreshed == 50, "the first snapshot builds every agent"
    c = world.cache
    for store in ("tasks", "offers", "pods", "node_usage"):
        setattr(c, store, NoWalk(getattr(c, store)))
    world.apply(("drop", "offers", "pop", "ns/o7"))  # an offer on n7 answered: n7 is free again
    snap = a.snapshot(0.0, only={"n7"})
    assert a.refreshed == 1 and [x.name for x in snap.agents] == ["n7"]
    assert snap.agents[0].available.cpus == 7
    assert snap.total is not None and snap.total.cpus == 400, "shares still count the whole cluster"
    sweep = a.snapshot(0.0)
    assert a.refreshed == 0 and len(sweep.agents) == 50, "nothing changed since: no agent rebuilt"
    world.apply(("task", "upsert", "ns/t9", "f0", None, "n9", {"cpus": 1}, "TASK_FINISHED"))
    a.snapshot(0.0)
    assert a.refreshed == 0, "a task whose pod shows holds nothing on its agent: no agent changed"
