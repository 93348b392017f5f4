"""The allocation cycle as a named, timed pipeline: snapshot (an immutable view of the cache),
allocate (the pure allocator, its generator derived from (seed, cycle number)), write (Offers).

An event-triggered cycle looks only at candidate agents (where an event freed resources: Mesos's
allocation candidates); the interval's cycle sweeps all. Every agent or framework passed over is
counted by reason in mesoskube_allocation_passed_over_total.

A part with declared dependencies: the writer, the cache (read), the settings, the refusal
filters it shares with the answer and lifecycle parts, and a hook applying declines the watch
reported late; it owns the allocation requests and the cycle's state.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from types import MappingProxyType

from mesoskube import metrics
from mesoskube.allocator import allocate
from mesoskube.allocator.snapshot import (
    Agent,
    AllocatorConfig,
    Filter,
    FrameworkView,
    OfferDecision,
    Snapshot,
)
from mesoskube.api.models import DEFAULT_ROLE, FrameworkPhase, OfferPhase
from mesoskube.master.builders import offer_manifest
from mesoskube.master.cache import Cache, format_time
from mesoskube.master.contract import Provenance
from mesoskube.master.objects import (
    add_into,
    framework_key,
    is_terminal,
    ns_name,
    offer_phase,
    resources_of,
    role_policy,
)
from mesoskube.master.taints import framework_tolerations
from mesoskube.master.writer import Writer
from mesoskube.resources import Resources, subtract_ranges
from mesoskube.settings import Settings

# (framework, agent) -> (until, refused resources); in memory only, as in Mesos (lost on failover)
RefusalFilters = dict[tuple[str, str], tuple[float, Resources | None]]

log = logging.getLogger("mesoskube.master")


@dataclass(frozen=True)
class CycleReport:
    """What the last cycle did (tests and debugging read it)."""

    number: int
    kind: str  # "sweep" (all agents) or "candidates" (event-triggered)
    agents: int
    offers: int
    passed_over: dict[str, int]


@dataclass
class AllocationCycle:
    writer: Writer
    cache: Cache
    settings: Settings
    agent_matches: Callable[[Mapping[str, str]], bool]
    allocator_config: AllocatorConfig
    filters: RefusalFilters
    apply_late_declines: Callable[[float], None]
    run_all: Callable[[Callable, Iterable], list]
    provenance: Provenance  # the Offers it creates are recorded as the master's (contract.py)
    wake: Callable[[], None] = lambda: None
    # Offer creates run here, not on the engine's write pool, so answers never queue behind a
    # cycle's Offer writes; None writes inline (unit tests).
    offer_pool: Executor | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    allocation_requested: bool = True
    full_allocation_requested: bool = True
    candidates: set[str] = field(default_factory=set)  # agents an event-triggered cycle looks at
    cycle: int = 0
    sweeps: int = 0  # cycles over every agent (tests wait for these instead of sleeping)
    last_allocation: float = 0.0
    last_full_allocation: float = 0.0
    last_cycle: CycleReport | None = None

    def __post_init__(self) -> None:
        self.port_ranges = self.settings.port_ranges()
        self._totals: dict[str, tuple] = {}
        self._in_flight = 0

    @property
    def offers_in_flight(self) -> int:
        """Offers decided and assumed in the cache whose create has not returned yet."""
        with self.lock:
            return self._in_flight

    def request(self, agents: Iterable[str] | None = None) -> None:
        """Ask for a cycle: over `agents` only (resources freed there), or over all of them."""
        with self.lock:
            if agents is None:
                self.full_allocation_requested = True
            else:
                self.candidates.update(agents)
            self.allocation_requested = True
        self.wake()

    def forget_agent(self, agent: str) -> None:
        self._totals.pop(agent, None)

    def snapshot(
        self, now: float, only: set[str] | None = None, passed: dict[str, int] | None = None
    ) -> Snapshot:
        """The allocator's input; `only` limits the agents offered to those names (shares still
        count the whole cluster)."""
        # The hot path of every cycle: parsed resources are memoised on the cached bodies, and sums
        # are kept as plain floats, building one Resources per agent rather than one per addition.
        with self.cache.lock:
            eligible = []
            for n in self.cache.nodes.values():
                if not self.agent_matches(n.labels):
                    continue  # not an agent at all: not counted as passed over
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
            pods = self.cache.pods
            open_offers = {
                k for k, o in self.cache.offers.items() if offer_phase(o) == OfferPhase.OUTSTANDING.value
            }
            for k, t in self.cache.tasks.items():
                if is_terminal(t):
                    continue
                r = resources_of(t)
                spec = t["spec"]
                if spec.get("offer") and f"{t['metadata']['namespace']}/{spec['offer']}" in open_offers:
                    # An accept still being worked (the pipelined engine allocates meanwhile): its
                    # Tasks are inside its Offer, counted below, on the same agent. Counting both
                    # would double the framework's share and skew DRF (measured: a weighted 2:1
                    # split ended 36:12 and 28:20 instead of 32:16).
                    continue
                add_into(
                    alloc[framework_key(t["metadata"]["namespace"], spec["framework"])][
                        spec.get("role") or DEFAULT_ROLE
                    ],
                    r,
                )
                if k not in pods:
                    # Launched (or being launched) but its pod not shown yet: it holds its
                    # resources, host ports included, or they would be offered again.
                    add_into(held[spec["agent"]], r)
                    if r.ports:
                        held_ports[spec["agent"]].extend(r.ports)
            outstanding: dict[str, int] = defaultdict(int)
            for o in self.cache.offers.values():
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
                used = self.cache.node_usage.get(n.name, none)
                a, h = n.allocatable, held.get(n.name, (0.0, 0.0, 0.0, 0.0))
                taken_ports = used.ports + tuple(held_ports.get(n.name, ()))
                total = self._agent_total(n)
                available = Resources(
                    a.cpus - used.cpus - h[0] if a.cpus > used.cpus + h[0] else 0.0,
                    a.mem - used.mem - h[1] if a.mem > used.mem + h[1] else 0.0,
                    a.disk - used.disk - h[2] if a.disk > used.disk + h[2] else 0.0,
                    a.gpus - used.gpus - h[3] if a.gpus > used.gpus + h[3] else 0.0,
                    subtract_ranges(self.port_ranges, taken_ports) if taken_ports else self.port_ranges,
                )
                agents.append(Agent(n.name, total, available, MappingProxyType(n.labels), n.taints))
            allocated = {
                fw: {role: Resources(*v) for role, v in roles.items()} for fw, roles in alloc.items()
            }
            frameworks = []
            for k, fw in self.cache.frameworks.items():
                st, sp = fw.get("status") or {}, fw.get("spec") or {}
                if st.get("phase") != FrameworkPhase.SUBSCRIBED.value or fw["metadata"].get(
                    "deletionTimestamp"
                ):
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
            roles = {name: role_policy(name, body) for name, body in self.cache.roles.items()}
        # After the cache was read: a decline swept away unprocessed was queued before its offer
        # left the cache, so either its resources were still held above or its filter is here.
        self.apply_late_declines(now)
        filters = tuple(
            Filter(fw, agent, until, refused)
            for (fw, agent), (until, refused) in self.filters.items()
            if until > now
        )
        return Snapshot(
            agents=tuple(agents),
            frameworks=tuple(frameworks),
            roles=MappingProxyType(roles),
            filters=filters,
            total=cluster,
        )

    def _agent_total(self, node) -> Resources:
        cached = self._totals.get(node.name)
        if cached is None or cached[0] is not node:
            a = node.allocatable
            cached = self._totals[node.name] = (
                node,
                Resources(a.cpus, a.mem, a.disk, a.gpus, self.port_ranges),
            )
        return cached[1]

    def allocate(self, now: float) -> None:
        """One cycle: snapshot -> allocate -> write, each stage timed."""
        started = time.perf_counter()
        with self.lock:
            full = (
                self.full_allocation_requested
                or now - self.last_full_allocation >= self.settings.allocationInterval
            )
            candidates, self.candidates = self.candidates, set()
            self.allocation_requested = False
            self.full_allocation_requested = False
        self.last_allocation = now
        if full:
            self.last_full_allocation = now
        self.cycle += 1
        for k in [k for k, v in self.filters.items() if v[0] <= now]:  # in place: the dict is shared
            self.filters.pop(k, None)
        passed: dict[str, int] = {}
        snap = self.snapshot(now, None if full else candidates, passed)
        t_snap = time.perf_counter()
        decisions = allocate(snap, now, self.allocator_config, self.cycle, passed)
        t_alloc = time.perf_counter()
        metrics.allocator_duration.observe(t_alloc - t_snap)
        if decisions:
            with self.cache.lock:
                fws = {k: self.cache.frameworks.get(k) for k in {d.framework for d in decisions}}
                labels = {a.name: dict(a.attributes) for a in snap.agents}
            expires = format_time(now + self.settings.offerTimeout) if self.settings.offerTimeout else None
            for d in decisions:
                body = self._offer_body(d, fws.get(d.framework), labels.get(d.agent, {}), expires)
                if body is None:
                    continue
                # Assumed at once: the next cycle counts it even while its create is under way.
                self.cache.assume("offers", {**copy.deepcopy(body), "status": {}})
                with self.lock:
                    self._in_flight += 1
                if self.offer_pool is None:
                    self._create_offer(body, d.agent)
                else:
                    self.offer_pool.submit(self._create_offer, body, d.agent)
        done = time.perf_counter()
        kind = "sweep" if full else "candidates"
        metrics.allocation_stage.labels(stage="snapshot", kind=kind).observe(t_snap - started)
        metrics.allocation_stage.labels(stage="allocate", kind=kind).observe(t_alloc - t_snap)
        metrics.allocation_stage.labels(stage="write", kind=kind).observe(done - t_alloc)
        for reason, n in passed.items():
            metrics.passed_over.labels(reason=reason).inc(n)
        metrics.allocation_runs.inc()
        metrics.allocation_duration.observe(done - started)
        if full:
            metrics.agents.set(len(snap.agents))
            self.sweeps += 1
        self.last_cycle = CycleReport(self.cycle, kind, len(snap.agents), len(decisions), passed)

    def _offer_body(
        self, d: OfferDecision, fw: dict | None, attributes: dict, expires: str | None
    ) -> dict | None:
        if fw is None:
            return None
        ns, name = ns_name(d.framework)
        body = offer_manifest(name, fw["metadata"]["uid"], d.role, d.agent, d.resources, attributes, expires)
        # Named here, not by generateName, so the cache can hold it before the API answers.
        body["metadata"].pop("generateName", None)
        body["metadata"]["name"] = f"{name[:40]}-{secrets.token_hex(4)}"
        body["metadata"]["namespace"] = ns
        return body

    def _create_offer(self, body: dict, agent: str) -> None:
        key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        self.provenance.expect(key)  # before the create: a framework may answer before it returns
        try:
            created = self.writer.create("offers", body["metadata"]["namespace"], body)
        except Exception as e:  # forget the assumption: the agent is free again for the next cycle
            log.warning("offer %s on %s not created: %s", key, agent, e)
            self.provenance.abandon(key)
            self.cache.forget("offers", key)
            self.request([agent])
            return
        finally:
            with self.lock:
                self._in_flight -= 1
        created.setdefault("status", {})
        self.provenance.made(created, key)
        self.cache.upsert("offers", created)
        metrics.offers.labels(event="sent").inc()
