"""A synthetic master cache (nodes, frameworks, running tasks, outstanding offers) for timing one
allocation cycle — the engine's snapshot plus the pure allocator — without an API server."""

from __future__ import annotations

import gc
import time

from mesoskube.allocator import allocate
from mesoskube.master.cache import Cache
from mesoskube.master.engine import Engine
from mesoskube.settings import Settings


def synthetic_cache(nodes: int, frameworks: int, tasks_per_node: int = 4, offers: int | None = None) -> Cache:
    cache = Cache()
    for i in range(nodes):
        cache.upsert_node(
            {
                "metadata": {
                    "name": f"n{i}",
                    "uid": f"nu{i}",
                    "resourceVersion": "1",
                    "labels": {"type": "kwok"},
                },
                "spec": {},
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "ephemeral-storage": "100Gi"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
    for j in range(frameworks):
        cache.upsert(
            "frameworks",
            {
                "metadata": {"name": f"f{j}", "namespace": "ns", "uid": f"fu{j}", "resourceVersion": "1"},
                "spec": {"roles": [f"r{j % 10}"]},
                "status": {"phase": "Subscribed"},
            },
        )
    for k in range(nodes * tasks_per_node):
        agent, fw = f"n{k % nodes}", k % frameworks
        cache.upsert(
            "tasks",
            {
                "metadata": {"name": f"t{k}", "namespace": "ns", "uid": f"tu{k}", "resourceVersion": "1"},
                "spec": {
                    "framework": f"f{fw}",
                    "role": f"r{fw % 10}",
                    "agent": agent,
                    "resources": {"cpus": 1, "mem": 1024},
                },
                "status": {"state": "TASK_RUNNING"},
            },
        )
        cache.upsert_pod(
            {
                "metadata": {"name": f"t{k}", "namespace": "ns", "uid": f"pu{k}", "resourceVersion": "1"},
                "spec": {
                    "nodeName": agent,
                    "containers": [{"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
                },
                "status": {"phase": "Running"},
            },
            ours=True,
        )
    for o in range(nodes // 2 if offers is None else offers):
        fw = o % frameworks
        cache.upsert(
            "offers",
            {
                "metadata": {"name": f"o{o}", "namespace": "ns", "uid": f"ou{o}", "resourceVersion": "1"},
                "spec": {
                    "framework": f"f{fw}",
                    "role": f"r{fw % 10}",
                    "agent": f"n{o}",
                    "resources": {"cpus": 4, "mem": 4096, "ports": "31000-32000"},
                },
            },
        )
    return cache


def _engine(nodes: int, frameworks: int, **settings) -> Engine:
    cache = synthetic_cache(nodes, frameworks)
    # The heap just built would make the first cycles pay its full garbage collection.
    gc.collect()
    engine = Engine(writer=None, settings=Settings(**settings), cache=cache, workers=0)  # type: ignore[arg-type]
    engine.snapshot(time.time())  # warm-up, as in a running master: parsed resources memoised
    return engine


class _Stopwatch:
    """Wall and CPU seconds (this process's: the machine is shared) of each stage, medians."""

    def __init__(self) -> None:
        self.laps: dict[str, list[float]] = {}

    def time(self, name: str, fn, *args):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.laps.setdefault(f"{name}_s", []).append(time.perf_counter() - w)
        self.laps.setdefault(f"{name}_cpu_s", []).append(time.process_time() - c)
        return out

    def medians(self, prefix: str = "") -> dict[str, float]:
        return {prefix + k: sorted(v)[len(v) // 2] for k, v in self.laps.items()}


def _offer_bodies(decisions, cycle: int) -> list[dict]:
    return [
        {
            "metadata": {"name": f"bench-{cycle}-{i}", "namespace": "ns", "resourceVersion": ""},
            "spec": {
                "framework": d.framework.split("/", 1)[1],
                "role": d.role,
                "agent": d.agent,
                "resources": d.resources.to_mapping(),
            },
            "status": {},
        }
        for i, d in enumerate(decisions)
    ]


def time_cycle(nodes: int, frameworks: int, repeats: int = 5, **settings) -> dict[str, float]:
    """Median seconds of the engine's snapshot and of the allocator for one interval sweep, the
    allocator counting pass-overs by reason as the engine has it do.

    `snapshot_s`/`allocator_s`: nothing changed since the last cycle (what this benchmark measured
    before the snapshot was incremental, when every cycle rebuilt every agent anyway).
    `changed_*`: the previous sweep's offers assumed into the cache first, as the engine does
    (every offered agent changed). `rebuilt_*`: every agent reported changed (the worst case, as
    the first cycle after a start); only with the incremental snapshot (`cache.holdings`)."""
    engine = _engine(nodes, frameworks, **settings)
    cache, config = engine.cache, engine.allocator_config
    steady, changed, rebuilt = _Stopwatch(), _Stopwatch(), _Stopwatch()
    offers = 0
    for r in range(repeats):
        snap = steady.time("snapshot", engine.snapshot, time.time())
        decisions = steady.time("allocator", allocate, snap, 0.0, config, r + 1, {})
        offers = len(decisions)
        bodies = _offer_bodies(decisions, r)
        for b in bodies:
            cache.assume("offers", b)
        snap = changed.time("snapshot", engine.snapshot, time.time())
        changed.time("allocator", allocate, snap, 0.0, config, r + 1, {})
        for b in bodies:
            cache.forget("offers", f"ns/{b['metadata']['name']}")
        engine.snapshot(time.time())  # the forgotten offers' agents, so the next lap is steady again
        if hasattr(cache, "holdings"):
            with cache.lock:
                for name in cache.nodes:
                    cache.holdings.touch(name)
            snap = rebuilt.time("snapshot", engine.snapshot, time.time())
            rebuilt.time("allocator", allocate, snap, 0.0, config, r + 1, {})
    engine.pool.shutdown()
    return {
        **steady.medians(),
        **changed.medians("changed_"),
        **rebuilt.medians("rebuilt_"),
        "offers": offers,
        "repeats": repeats,
        "counts_passed_over": True,
    }


def time_event_cycle(nodes: int, frameworks: int, repeats: int = 7) -> dict[str, float]:
    """Median seconds of an event-triggered cycle, as the engine runs it between interval sweeps:
    an outstanding offer is deleted (the watch's DELETED event: its agent is free again), then the
    snapshot over that one candidate agent and the allocator. `change_s` is the cache update itself
    (the watch handler's share)."""
    engine = _engine(nodes, frameworks)
    cache, config = engine.cache, engine.allocator_config
    watch = _Stopwatch()
    agents = offers = 0
    for r in range(repeats):
        agent = f"n{r}"  # synthetic offer o{r} sits on agent n{r}
        watch.time("change", cache.delete, "offers", f"ns/o{r}")
        snap = watch.time("snapshot", engine.allocation.snapshot, time.time(), {agent})
        decisions = watch.time("allocator", allocate, snap, 0.0, config, r + 1, {})
        agents, offers = len(snap.agents), len(decisions)
    engine.pool.shutdown()
    return {**watch.medians(), "agents": agents, "offers": offers, "repeats": repeats}


def time_status(nodes: int, frameworks: int, repeats: int = 5) -> dict[str, float]:
    """Median seconds of one status round (status.py: every framework's and role's status and the
    metrics, decided from the cache's running totals; the writes themselves dropped), which runs
    every STATUS_INTERVAL beside the engine's loop."""
    engine = _engine(nodes, frameworks)
    status = engine.status
    status.run_all = lambda fn, items: list(items)  # type: ignore[method-assign]  (decided, not sent)
    watch = _Stopwatch()
    for _ in range(repeats):
        watch.time("status", status.publish_status, time.time())
    engine.pool.shutdown()
    return {**watch.medians(), "tasks": len(engine.cache.tasks), "repeats": repeats}
