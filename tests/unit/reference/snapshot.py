"""The engine's snapshot as it was before held resources were tracked incrementally (commit
3cc3769): every cycle re-walks every task and offer. Kept as the oracle of a full recomputation;
the incremental snapshot must give the same Snapshot after any sequence of cache changes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from types import MappingProxyType

from mesoskube.allocator.snapshot import Agent, Filter, FrameworkView, Snapshot
from mesoskube.api.models import DEFAULT_ROLE, FrameworkPhase, OfferPhase
from mesoskube.master.cache import Cache
from mesoskube.master.objects import (
    add_into,
    framework_key,
    is_terminal,
    offer_phase,
    resources_of,
    role_policy,
)
from mesoskube.master.taints import framework_tolerations
from mesoskube.resources import PortRange, Resources, subtract_ranges
from tests.unit.reference.recount import inside_its_offer


def full_snapshot(
    cache: Cache,
    agent_matches: Callable[[Mapping[str, str]], bool],
    port_ranges: tuple[PortRange, ...],
    filters: dict,
    now: float,
    only: set[str] | None = None,
    passed: dict[str, int] | None = None,
) -> Snapshot:
    with cache.lock:
        eligible = []
        for n in cache.nodes.values():
            if not agent_matches(n.labels):
                continue
            if n.offerable:
                eligible.append(n)
            elif passed is not None:
                reason = "agent_not_ready" if not n.ready else "agent_cordoned_or_deleting"
                passed[reason] = passed.get(reason, 0) + 1
        cluster = None
        nodes = eligible
        if only is not None:
            cluster = Resources(
                cpus=sum(n.allocatable.cpus for n in eligible),
                mem=sum(n.allocatable.mem for n in eligible),
                disk=sum(n.allocatable.disk for n in eligible),
                gpus=sum(n.allocatable.gpus for n in eligible),
            )
            nodes = [n for n in eligible if n.name in only]
        held: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        held_ports: dict[str, list] = defaultdict(list)
        alloc: dict[str, dict[str, list[float]]] = defaultdict(
            lambda: defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        )
        pods = cache.pods
        for k, t in cache.tasks.items():
            if is_terminal(t) or inside_its_offer(cache, t):
                continue
            r = resources_of(t)
            spec = t["spec"]
            add_into(
                alloc[framework_key(t["metadata"]["namespace"], spec["framework"])][
                    spec.get("role") or DEFAULT_ROLE
                ],
                r,
            )
            if k not in pods and not cache.pod_ended(k):
                add_into(held[spec["agent"]], r)
                if r.ports:
                    held_ports[spec["agent"]].extend(r.ports)
        outstanding: dict[str, int] = defaultdict(int)
        for o in cache.offers.values():
            if offer_phase(o) != OfferPhase.OUTSTANDING.value:
                continue
            r = resources_of(o)
            spec = o["spec"]
            outstanding[framework_key(o["metadata"]["namespace"], spec["framework"])] += 1
            add_into(held[spec["agent"]], r)
            if r.ports:
                held_ports[spec["agent"]].extend(r.ports)
            add_into(
                alloc[framework_key(o["metadata"]["namespace"], spec["framework"])][
                    spec.get("role") or DEFAULT_ROLE
                ],
                r,
            )
        agents = []
        none = Resources()
        for n in nodes:
            used = cache.node_usage.get(n.name, none)
            a, h = n.allocatable, held.get(n.name, (0.0, 0.0, 0.0, 0.0))
            taken_ports = used.ports + tuple(held_ports.get(n.name, ()))
            total = Resources(a.cpus, a.mem, a.disk, a.gpus, port_ranges)
            available = Resources(
                a.cpus - used.cpus - h[0] if a.cpus > used.cpus + h[0] else 0.0,
                a.mem - used.mem - h[1] if a.mem > used.mem + h[1] else 0.0,
                a.disk - used.disk - h[2] if a.disk > used.disk + h[2] else 0.0,
                a.gpus - used.gpus - h[3] if a.gpus > used.gpus + h[3] else 0.0,
                subtract_ranges(port_ranges, taken_ports) if taken_ports else port_ranges,
            )
            agents.append(Agent(n.name, total, available, MappingProxyType(n.labels), n.taints))
        allocated = {fw: {role: Resources(*v) for role, v in roles.items()} for fw, roles in alloc.items()}
        frameworks = []
        for k, fw in cache.frameworks.items():
            st, sp = fw.get("status") or {}, fw.get("spec") or {}
            if st.get("phase") != FrameworkPhase.SUBSCRIBED.value or fw["metadata"].get("deletionTimestamp"):
                continue
            roles = tuple(sp.get("roles") or [DEFAULT_ROLE])
            frameworks.append(
                FrameworkView(
                    key=k,
                    roles=roles,
                    suppressed_roles=frozenset(roles) if sp.get("suppress") else frozenset(),
                    allocated=MappingProxyType(allocated.get(k, {})),
                    outstanding_offers=outstanding.get(k, 0),
                    tolerations=framework_tolerations(sp),
                )
            )
        roles = {name: role_policy(name, body) for name, body in cache.roles.items()}
    return Snapshot(
        agents=tuple(agents),
        frameworks=tuple(frameworks),
        roles=MappingProxyType(roles),
        filters=tuple(
            Filter(fw, agent, until, refused)
            for (fw, agent), (until, refused) in filters.items()
            if until > now
        ),
        total=cluster,
    )
