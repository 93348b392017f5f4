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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
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
from mesoskube.api.models import DEFAULT_ROLE, FrameworkPhase
from mesoskube.master.builders import offer_manifest
from mesoskube.master.cache import Cache, NodeInfo, format_time
from mesoskube.master.contract import Provenance
from mesoskube.master.failurelog import FailureLog
from mesoskube.master.fairqueue import FairQueue
from mesoskube.master.holdings import from_milli, milli
from mesoskube.master.objects import ns_name, role_policy
from mesoskube.master.taints import framework_tolerations
from mesoskube.master.writer import ApiError, Writer
from mesoskube.resources import Resources, subtract_ranges
from mesoskube.settings import Settings

# (framework, agent) -> (until, refused resources); in memory only, as in Mesos (lost on failover)
RefusalFilters = dict[tuple[str, str], tuple[float, Resources | None]]

log = logging.getLogger("mesoskube.master")
_NONE = Resources()
# After a cycle whose Offer creates failed, no cycle runs for this long, doubling with each such
# cycle in a row: during an API server outage (or its 429s and 503s) the failed agents came back as
# candidates of the next event-triggered cycle, up to maxOffersPerFramework creates per framework
# every PIPELINED_SWEEP_GAP. Reset by the first create that succeeds.
OFFER_BACKOFF_BASE = 0.25
OFFER_BACKOFF_MAX = 4.0


@dataclass(frozen=True)
class CycleReport:
    """What the last cycle did (tests and debugging read it)."""

    number: int
    kind: str  # "sweep" (all agents) or "candidates" (event-triggered)
    agents: int
    offers: int
    passed_over: dict[str, int]
    refreshed: int = 0  # agents whose view the snapshot rebuilt (the cache reported them changed)


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
    offer_pool: Executor | FairQueue | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    allocation_requested: bool = True
    full_allocation_requested: bool = True
    # A framework asked for offers (subscribed, revived, lifted suppress): the next cycle comes
    # after MIN_ALLOCATION_GAP, not the pipelined engine's longer gap for event-triggered cycles.
    prompt_requested: bool = False
    candidates: set[str] = field(default_factory=set)  # agents an event-triggered cycle looks at
    cycle: int = 0
    sweeps: int = 0  # cycles over every agent (tests wait for these instead of sleeping)
    last_allocation: float = 0.0
    last_full_allocation: float = 0.0
    last_cycle: CycleReport | None = None
    log_first_offer: bool = False  # after a takeover: say when the first Offer is stored

    def __post_init__(self) -> None:
        self.port_ranges = self.settings.port_ranges()
        self._in_flight = 0
        self.failures = FailureLog(log)
        # The agents' views, kept between cycles: the cache names the agents that changed.
        self._changed = self.cache.subscribe_agents()
        self._primed = False
        self._views: dict[str, Agent] = {}  # offerable agents
        self._view_nodes: dict[str, NodeInfo] = {}  # the node each view was built from
        self._names: list[str] | None = []  # their names, sorted; None until sorted again
        self._ordered: tuple[Agent, ...] | None = None  # the views in name order, until one changes
        self._unoffered: dict[str, str] = {}  # matching nodes not offerable now -> why
        self._cluster = [0, 0, 0, 0]  # the views' totals, milli-units (holdings.py)
        self.refreshed = 0  # agents the last snapshot rebuilt
        self.held_until = 0.0  # no cycle before this (engine clock): Offer creates failing
        self._failed_cycles = 0  # cycles in a row with a failed Offer create
        self._last_failed_cycle = 0

    @property
    def offers_in_flight(self) -> int:
        """Offers decided and assumed in the cache whose create has not returned yet."""
        with self.lock:
            return self._in_flight

    def request(self, agents: Iterable[str] | None = None, prompt: bool = False) -> None:
        """Ask for a cycle: over `agents` only (resources freed there), or over all of them;
        `prompt` when a framework asked for offers."""
        with self.lock:
            if agents is None:
                self.full_allocation_requested = True
            else:
                self.candidates.update(agents)
            self.allocation_requested = True
            self.prompt_requested = self.prompt_requested or prompt
        self.wake()

    def snapshot(
        self, now: float, only: set[str] | None = None, passed: dict[str, int] | None = None
    ) -> Snapshot:
        """The allocator's input; `only` limits the agents offered to those names (shares still
        count the whole cluster)."""
        view = self.cache_view(only, passed)
        # After the cache was read: a decline swept away unprocessed was queued before its offer
        # left the cache, so either its resources were still held above or its filter is here.
        self.apply_late_declines(now)
        filters = self._filters_in_force(now, only, [fw.key for fw in view.frameworks])
        return replace(view, filters=filters)

    def cache_view(self, only: set[str] | None = None, passed: dict[str, int] | None = None) -> Snapshot:
        """The snapshot as read from the cache, without refusal filters."""
        # Nothing here walks the pods, tasks or offers: their totals are kept as the cache changes
        # (holdings.py), and only the agents the cache reports changed get a new view.
        with self.cache.lock:
            if self._primed:
                changed = list(self._changed)
            else:  # the first snapshot (or a cache filled before this part existed) sees every node
                changed = list(self._changed | set(self.cache.nodes) | set(self._views))
                self._primed = True
            self._changed.clear()
            for name in changed:
                self._refresh(name)
            self.refreshed = len(changed)
            if only is None:
                agents = self._all_agents()
                unoffered: Iterable[str] = self._unoffered.values()
            else:
                agents = tuple(self._views[n] for n in sorted(only) if n in self._views)
                unoffered = [self._unoffered[n] for n in only if n in self._unoffered]
            if passed is not None:
                for reason in unoffered:
                    passed[reason] = passed.get(reason, 0) + 1
            holdings = self.cache.holdings
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
                        allocated=MappingProxyType(holdings.allocated(k)),
                        outstanding_offers=holdings.outstanding(k),
                        tolerations=framework_tolerations(sp),
                    )
                )
            roles = {name: role_policy(name, body) for name, body in self.cache.roles.items()}
            return Snapshot(
                agents=agents,
                frameworks=tuple(frameworks),
                roles=MappingProxyType(roles),
                total=from_milli(self._cluster),
            )

    def cluster_total(self) -> Resources:
        """The offerable agents' totals at the last snapshot (hold the cache's lock)."""
        return from_milli(self._cluster)

    def _filters_in_force(
        self, now: float, only: set[str] | None, frameworks: list[str]
    ) -> tuple[Filter, ...]:
        # A cycle over a few candidates looks up their filters rather than walk every filter.
        if only is not None and len(only) * len(frameworks) < len(self.filters):
            pairs = [(fw, agent) for agent in sorted(only) for fw in frameworks]
            return tuple(
                Filter(fw, agent, *f)
                for fw, agent in pairs
                if (f := self.filters.get((fw, agent))) is not None and f[0] > now
            )
        return tuple(
            Filter(fw, agent, until, refused)
            for (fw, agent), (until, refused) in self.filters.items()
            if until > now
        )

    def _refresh(self, name: str) -> None:
        """Rebuild the view of one agent the cache reported changed (must hold the cache's lock)."""
        node = self.cache.nodes.get(name)
        old = self._views.pop(name, None)
        old_node = self._view_nodes.pop(name, None)
        self._unoffered.pop(name, None)
        self._ordered = None
        agent = None
        if node is not None and self.agent_matches(node.labels):  # else not an agent at all
            if node.offerable:
                agent = self._agent(node, old if old_node is node else None)
            else:
                self._unoffered[name] = "agent_not_ready" if not node.ready else "agent_cordoned_or_deleting"
        if old is not None and (agent is None or old_node is not node):
            self._add_cluster(old.total, -1)
        if agent is None:
            if old is not None:
                self._names = None
            return
        self._views[name] = agent
        self._view_nodes[name] = node
        if old is None or old_node is not node:
            self._add_cluster(agent.total, 1)
        if old is None:
            self._names = None

    def _add_cluster(self, total: Resources, sign: int) -> None:
        for i, v in enumerate(milli(total)):
            self._cluster[i] += sign * v

    def _all_agents(self) -> tuple[Agent, ...]:
        if self._names is None:  # sorted again only when agents came or went
            self._names = sorted(self._views)
        if self._ordered is None:  # by name: the allocator's shuffle starts from that order anyway
            self._ordered = tuple(self._views[n] for n in self._names)
        return self._ordered

    def _agent(self, node, old: Agent | None) -> Agent:
        """Allocatable minus the node's pods minus what pod-less tasks and outstanding offers hold;
        `old` is the agent's last view when its node is unchanged since."""
        used = self.cache.node_usage.get(node.name) or _NONE
        held, held_ports = self.cache.holdings.held_on(node.name)
        a = node.allocatable
        hc, hm, hd, hg = held[0] / 1000, held[1] / 1000, held[2] / 1000, held[3] / 1000
        taken = used.ports + held_ports if used.ports else held_ports
        if not taken:
            ports = self.port_ranges
        elif taken == self.port_ranges:  # the common case: an outstanding offer holds every free port
            ports = ()
        else:
            ports = subtract_ranges(self.port_ranges, taken)
        available = Resources(
            a.cpus - used.cpus - hc if a.cpus > used.cpus + hc else 0.0,
            a.mem - used.mem - hm if a.mem > used.mem + hm else 0.0,
            a.disk - used.disk - hd if a.disk > used.disk + hd else 0.0,
            a.gpus - used.gpus - hg if a.gpus > used.gpus + hg else 0.0,
            ports,
        )
        if old is not None:
            return Agent(node.name, old.total, available, old.attributes, node.taints)
        total = Resources(a.cpus, a.mem, a.disk, a.gpus, self.port_ranges)
        return Agent(node.name, total, available, MappingProxyType(node.labels), node.taints)

    def allocate(self, now: float) -> None:
        """One cycle: snapshot -> allocate -> write, each stage timed; none while Offer creates
        back off (the requests wait for it)."""
        if now < self.held_until:
            return
        started = time.perf_counter()
        with self.lock:
            full = (
                self.full_allocation_requested
                or now - self.last_full_allocation >= self.settings.allocationInterval
            )
            candidates, self.candidates = self.candidates, set()
            self.allocation_requested = False
            self.full_allocation_requested = False
            self.prompt_requested = False
        self.last_allocation = now
        if full:
            self.last_full_allocation = now
        self.cycle += 1
        if full:  # expired filters are ignored anyway; dropping them is the sweep's work, not an event's
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
            # The labels of the agents offered only: a sweep of 50,000 agents may offer a few hundred.
            by_name = {a.name: a for a in snap.agents}
            labels = {d.agent: dict(by_name[d.agent].attributes) for d in decisions}
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
                    self._create_offer(body, d.agent, self.cycle, now)
                elif isinstance(self.offer_pool, FairQueue):  # one line per framework (fairqueue.py)
                    self.offer_pool.submit_for(
                        d.framework, self._create_offer, body, d.agent, self.cycle, now
                    )
                else:
                    self.offer_pool.submit(self._create_offer, body, d.agent, self.cycle, now)
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
        self.last_cycle = CycleReport(
            self.cycle, kind, len(snap.agents), len(decisions), passed, self.refreshed
        )

    def _back_off(self, cycle: int, decided_at: float) -> None:
        """Hold the next cycles back after this one's failed create (once per cycle, however many
        of its creates failed: they fail together when the API server does)."""
        with self.lock:
            if cycle == self._last_failed_cycle:
                return
            self._last_failed_cycle = cycle
            self._failed_cycles += 1
            hold = min(OFFER_BACKOFF_MAX, OFFER_BACKOFF_BASE * 2 ** min(self._failed_cycles - 1, 8))
            self.held_until = max(self.held_until, decided_at + hold)

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

    def _create_offer(self, body: dict, agent: str, cycle: int, decided_at: float) -> None:
        key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        with self.cache.lock:
            withdrawn = key not in self.cache.offers
        if withdrawn:
            # Its framework was torn down while the create waited for the client's token: nobody
            # to offer it to. A teardown of a framework holding the cap's 256 offers left up to
            # 250 such creates queued, and the next framework's first offer waited behind them
            # (5-7 s at QPS 50 in make bench's first-offer probes).
            self.cache.forget("offers", key)
            with self.lock:
                self._in_flight -= 1
            return
        self.provenance.expect(key)  # before the create: a framework may answer before it returns
        try:
            created = self.writer.create("offers", body["metadata"]["namespace"], body)
        except Exception as e:  # forget the assumption: the agent is free again for the next cycle
            self.failures.failed("offer creates", "offer %s on %s not created: %s", key, agent, e)
            self.provenance.abandon(key)
            self.cache.forget("offers", key)
            if not isinstance(e, ApiError) or e.retriable:
                self._back_off(cycle, decided_at)  # the API server's trouble: every create waits
                self.request([agent])
            # Else the Offer itself is refused (a 422 for an agent's labels, a quota's 403): that
            # one agent is tried again at the interval's sweep, and holds nobody else back.
            return
        finally:
            with self.lock:
                self._in_flight -= 1
        with self.lock:
            # A create decided after the last failing cycle went through: the API server answers
            # again. (An older cycle's success, landing late, says nothing about that.)
            cleared = self.held_until > 0 and cycle > self._last_failed_cycle
            if cleared:
                self._failed_cycles = 0
                self.held_until = 0.0
        if cleared:
            self.wake()
        self.failures.succeeded("offer creates")
        created.setdefault("status", {})
        self.provenance.made(created, key)
        self.cache.upsert("offers", created)
        metrics.offers.labels(event="sent").inc()
        if self.log_first_offer:
            self.log_first_offer = False
            log.info("first offer as leader stored: %s on %s (cycle %d)", key, agent, self.cycle)
