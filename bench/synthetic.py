"""A synthetic master cache (nodes, frameworks, running tasks, outstanding offers) for timing one
allocation cycle — the engine's snapshot plus the pure allocator — without an API server."""

from __future__ import annotations

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


def time_cycle(nodes: int, frameworks: int, repeats: int = 3) -> dict[str, float]:
    """Median seconds of the engine's snapshot and of the allocator for one cycle (after a warm-up
    cycle, as in a running master whose parsed resources are memoised)."""
    engine = Engine(writer=None, settings=Settings(), cache=synthetic_cache(nodes, frameworks))  # type: ignore[arg-type]
    engine.snapshot(time.time())
    snaps, allocs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        snap = engine.snapshot(time.time())
        t1 = time.perf_counter()
        allocate(snap, 0.0, engine.allocator_config)
        t2 = time.perf_counter()
        snaps.append(t1 - t0)
        allocs.append(t2 - t1)
    engine.pool.shutdown()
    snaps.sort()
    allocs.sort()
    return {"snapshot_s": snaps[len(snaps) // 2], "allocator_s": allocs[len(allocs) // 2]}


def time_event_cycle(nodes: int, frameworks: int, repeats: int = 5) -> dict[str, float]:
    """Median seconds of an event-triggered cycle: one agent freed resources (its candidates set
    is that agent), snapshot + allocator, as the engine runs it between interval sweeps."""
    engine = Engine(writer=None, settings=Settings(), cache=synthetic_cache(nodes, frameworks))  # type: ignore[arg-type]
    engine.snapshot(time.time())
    free = f"n{nodes - 1}"  # synthetic offers sit on the first half of the agents
    snaps, allocs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        snap = engine.allocation.snapshot(time.time(), only={free})
        t1 = time.perf_counter()
        allocate(snap, 0.0, engine.allocator_config)
        t2 = time.perf_counter()
        snaps.append(t1 - t0)
        allocs.append(t2 - t1)
    engine.pool.shutdown()
    snaps.sort()
    allocs.sort()
    return {
        "snapshot_s": snaps[len(snaps) // 2],
        "allocator_s": allocs[len(allocs) // 2],
        "agents": len(snap.agents),
    }
