"""One allocation cycle: snapshot in, offer decisions out (Mesos's hierarchical allocator, simplified).

Pure: no I/O and no clock of its own (`now` is passed in), and the same snapshot, `now` and
config.seed always give the same decisions, so the master's behaviour can be replayed in tests.

Departures from Mesos's hierarchical.cpp: roles are flat (no "a/b" hierarchy), there is no
reservation or quota-guarantee stage (quota is a limit only), and frameworks inside a role all
have weight 1.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from mesoskube.allocator.snapshot import (
    Agent,
    AllocatorConfig,
    FrameworkView,
    OfferDecision,
    Snapshot,
    SorterKind,
    Taint,
    tolerated,
)
from mesoskube.allocator.sorter import DRFSorter, RandomSorter, Sorter
from mesoskube.resources import SCALARS, Resources

_NO_RESOURCES = Resources()
_NOBODY: frozenset[str] = frozenset()
_BY_NAME = attrgetter("name")
DEFAULT_CONFIG = AllocatorConfig()


def cycle_rng(seed: int, cycle: int) -> random.Random:
    """The generator of one cycle: replayable from (seed, cycle number), different every cycle (one
    generator re-seeded alike each cycle made the same framework win every tie, forever)."""
    return random.Random(f"mesoskube:{seed}:{cycle}")


def allocate(
    snapshot: Snapshot,
    now: float,
    config: AllocatorConfig = DEFAULT_CONFIG,
    cycle: int = 0,
    passed_over: dict[str, int] | None = None,
) -> list[OfferDecision]:
    """Offer every agent's available resources to frameworks by hierarchical DRF (or random order).

    Each agent's leftover goes whole to the first eligible (role, framework) in sorter order,
    capped by that role's quota headroom; whatever the cap leaves is offered on to the next role.
    Decisions are returned in the order they were made. `cycle` numbers the cycle for the agent
    shuffle and the random sorter; `passed_over`, if given, counts by reason each time a framework
    was skipped for an agent ("filtered", "offer_cap", "untolerated_taints"), a role was
    ("role_at_quota", "quota_leftover_below_min") or an agent was left unoffered
    ("below_min_allocatable", "no_eligible_framework").

    Once no role has a framework that may still be offered anything (each at its offer cap, or
    its role at quota), no later agent can be offered: the rest are passed over without a visit
    and counted as a visit would have counted them.
    """
    rng = cycle_rng(config.seed, cycle)
    state = _Cycle.build(snapshot, now, config, rng)
    state.passed_over = passed_over
    decisions: list[OfferDecision] = []
    if not state.live:  # nothing can be offered: no order to draw (a cycle at 50,000 agents, all capped)
        state.pass_unvisited(snapshot.agents, 0)
        return decisions
    order = _shuffled(snapshot.agents, rng)
    for i, agent in enumerate(order):
        if not state.live:
            state.pass_unvisited(order, i)
            break
        state.allocate_agent(agent, decisions)
    return decisions


def _shuffled(agents: tuple[Agent, ...], rng: random.Random) -> list[Agent]:
    # Mesos shuffles agents so no node is always offered first; sorting first makes the shuffle
    # depend on the seed alone, not on the order the master's indexes happened to list agents.
    order = sorted(agents, key=_BY_NAME)
    rng.shuffle(order)
    return order


def _cluster_total(agents: tuple[Agent, ...]) -> Resources:
    # Scalars only: shares ignore ports, and summing thousands of port ranges is wasted work.
    return Resources(**{name: sum(getattr(agent.total, name) for agent in agents) for name in SCALARS})


def _active_filters(snapshot: Snapshot, now: float) -> dict[str, dict[str, list[Resources | None]]]:
    """Agent -> framework -> the resources it refused there, for filters still in force."""
    refused: dict[str, dict[str, list[Resources | None]]] = {}
    for f in snapshot.filters:
        if f.expires_at > now:
            refused.setdefault(f.agent, {}).setdefault(f.framework, []).append(f.resources)
    return refused


def _is_refused(filters: list[Resources | None] | None, candidate: Resources) -> bool:
    # More than was refused (say, cpus freed since the decline) passes the filter.
    return bool(filters) and any(r is None or r.contains(candidate) for r in filters)


def _role_allocations(frameworks: tuple[FrameworkView, ...]) -> dict[str, Resources]:
    # A role holds what all its frameworks hold, including frameworks that are suppressed or no
    # longer subscribed to it: those resources still count against its share and its quota.
    held: dict[str, Resources] = {}
    for framework in frameworks:
        for role, resources in framework.allocated.items():
            held[role] = held.get(role, _NO_RESOURCES) + resources
    return held


def _offerable_roles(frameworks: tuple[FrameworkView, ...]) -> dict[str, list[FrameworkView]]:
    """Role -> frameworks that may be offered resources in it (subscribed and not suppressed)."""
    by_role: dict[str, list[FrameworkView]] = {}
    for framework in sorted(frameworks, key=lambda fw: fw.key):
        for role in dict.fromkeys(framework.roles):
            if role not in framework.suppressed_roles:
                by_role.setdefault(role, []).append(framework)
    return by_role


def _quota_starves(headroom: Resources) -> bool:
    """A role at its cpu (or mem) quota gets no offer: a 0-cpu offer of an agent's memory runs
    nothing useful and holds the memory away from every other role (Mesos's quota headroom likewise
    offers no resources beyond the limit). Also on an agent whose cpus are all used: its leftover
    memory went to the role at quota before, for every agent."""
    return headroom.cpus <= 0 or headroom.mem <= 0


@dataclass
class _Cycle:
    """The state one allocate() call threads through its agents."""

    roles: Sorter
    frameworks: dict[str, Sorter]  # role -> sorter over its offerable frameworks
    quotas: dict[str, Resources]  # role -> its quota limit, for roles that have one
    filtered: dict[str, dict[str, list[Resources | None]]]  # agent -> framework -> refused resources
    min_allocatable: tuple[Resources, ...]
    offers_left: dict[str, int] | None  # framework -> offers it may still be sent; None = no cap
    views: dict[str, FrameworkView]
    roles_of: dict[str, list[str]]  # framework -> the roles it may be offered in
    open: dict[str, int]  # role -> its frameworks not at their offer cap
    starved: set[str]  # roles at their quota
    live: int  # roles neither at quota nor with every framework at its cap
    passed_over: dict[str, int] | None = None  # reason -> count, when the caller asks
    intolerant: dict[tuple[Taint, ...], frozenset[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, snapshot: Snapshot, now: float, config: AllocatorConfig, rng: random.Random) -> _Cycle:
        total = snapshot.total if snapshot.total is not None else _cluster_total(snapshot.agents)

        def new_sorter() -> Sorter:
            if config.sorter == SorterKind.RANDOM:
                return RandomSorter(total, rng)
            return DRFSorter(total)

        held = _role_allocations(snapshot.frameworks)
        roles = new_sorter()
        frameworks: dict[str, Sorter] = {}
        roles_of: dict[str, list[str]] = {}
        for role, members in sorted(_offerable_roles(snapshot.frameworks).items()):
            policy = snapshot.roles.get(role)
            roles.add(role, weight=policy.weight if policy else 1.0, allocation=held.get(role, _NO_RESOURCES))
            frameworks[role] = sorter = new_sorter()
            for framework in members:
                sorter.add(framework.key, allocation=framework.allocated.get(role, _NO_RESOURCES))
                roles_of.setdefault(framework.key, []).append(role)
        cap = config.max_offers_per_framework
        offers_left = {fw.key: cap - fw.outstanding_offers for fw in snapshot.frameworks} if cap else None
        quotas = {r: p.quota_limit for r, p in snapshot.roles.items() if p.quota_limit is not None}
        starved = {r for r in frameworks if r in quotas and _quota_starves(quotas[r] - roles.allocation(r))}
        # Not from the sorters' order: the random sorter would draw from the cycle's generator.
        open_ = dict.fromkeys(frameworks, 0)
        for fw, its_roles in roles_of.items():
            if offers_left is None or offers_left[fw] > 0:
                for role in its_roles:
                    open_[role] += 1
        return cls(
            roles=roles,
            frameworks=frameworks,
            quotas=quotas,
            filtered=_active_filters(snapshot, now),
            min_allocatable=config.min_allocatable,
            offers_left=offers_left,
            views={fw.key: fw for fw in snapshot.frameworks},
            roles_of=roles_of,
            open=open_,
            starved=starved,
            live=sum(1 for r in frameworks if open_[r] and r not in starved),
        )

    def allocate_agent(self, agent: Agent, decisions: list[OfferDecision]) -> None:
        remaining = agent.available
        if not self._allocatable(remaining):
            self._pass("below_min_allocatable")
            return
        # Frameworks that do not tolerate the agent's taints are passed over like filtered ones.
        intolerant = self._intolerant_of(agent.taints) if agent.taints else _NOBODY
        offered: frozenset[str] | set[str] = _NOBODY  # Mesos makes one offer per framework per agent
        made = False
        while True:
            decision = self._next_offer(agent, remaining, offered, intolerant)
            if decision is None:
                if not made:
                    self._pass("no_eligible_framework")
                return
            decisions.append(decision)
            made = True
            self._record(decision)
            if decision.resources is remaining:
                return  # the whole agent went; the common case, so skip the subtraction
            offered = {*offered, decision.framework}
            # Ports leave with this offer; only a quota-capped scalar leftover can remain.
            remaining = remaining - decision.resources
            if not self._allocatable(remaining):
                return

    def pass_unvisited(self, agents: Sequence[Agent], start: int) -> None:
        """Count the agents from `start` on as visiting them would, once no decision can be made:
        per offerable agent, each framework of a role not at quota is at its offer cap, each
        role at quota is passed over, and no framework is eligible."""
        if self.passed_over is None:
            return
        offerable = sum(1 for i in range(start, len(agents)) if self._allocatable(agents[i].available))
        capped = sum(len(s) for role, s in self.frameworks.items() if role not in self.starved)
        self._pass("below_min_allocatable", len(agents) - start - offerable)
        self._pass("offer_cap", capped * offerable)
        self._pass("role_at_quota", len(self.starved) * offerable)
        self._pass("no_eligible_framework", offerable)

    def _allocatable(self, r: Resources) -> bool:
        """Mesos --min_allocatable_resources: holds at least one of the minimum quantities. Port
        ranges are compared only for a minimum that has some (rare): this runs once or twice per
        agent per cycle."""
        c, m, d, g = r.cpus, r.mem, r.disk, r.gpus
        if not (c > 0 or m > 0 or d > 0 or g > 0 or r.ports):
            return False
        if not self.min_allocatable:
            return True
        for minimum in self.min_allocatable:
            if minimum.ports:
                if r.contains(minimum):
                    return True
            elif c >= minimum.cpus and m >= minimum.mem and d >= minimum.disk and g >= minimum.gpus:
                return True
        return False

    def _intolerant_of(self, taints: tuple[Taint, ...]) -> frozenset[str]:
        found = self.intolerant.get(taints)
        if found is None:  # once per distinct set of taints, not per agent
            found = self.intolerant[taints] = frozenset(
                k for k, fw in self.views.items() if not tolerated(fw.tolerations, taints)
            )
        return found

    def _pass(self, reason: str, n: int = 1) -> None:
        if self.passed_over is not None and n:
            self.passed_over[reason] = self.passed_over.get(reason, 0) + n

    def _record(self, decision: OfferDecision) -> None:
        # Later agents in this cycle must see the new shares, or DRF would not interleave.
        role, framework = decision.role, decision.framework
        self.roles.allocated(role, decision.resources)
        self.frameworks[role].allocated(framework, decision.resources)
        if self.offers_left is not None:
            self.offers_left[framework] -= 1
            if self.offers_left[framework] == 0:  # at its cap: its roles may have no one left
                for r in self.roles_of[framework]:
                    self.open[r] -= 1
                    if not self.open[r] and r not in self.starved:
                        self.live -= 1
        quota = self.quotas.get(role)
        if quota is None or role in self.starved:
            return
        if _quota_starves(quota - self.roles.allocation(role)):
            self.starved.add(role)
            if self.open[role]:
                self.live -= 1

    def _next_offer(
        self,
        agent: Agent,
        remaining: Resources,
        offered: frozenset[str] | set[str],
        intolerant: frozenset[str],
    ) -> OfferDecision | None:
        refused = self.filtered.get(agent.name)
        for role in self.roles.order():
            quota = self.quotas.get(role)
            if quota is None:
                resources = remaining
            else:
                headroom = quota - self.roles.allocation(role)
                if _quota_starves(headroom):
                    self._pass("role_at_quota")
                    continue
                resources = remaining.min_with(headroom)
            framework = self._first_eligible(role, refused, offered, intolerant, resources)
            if framework is None:
                continue
            if resources is remaining or self._allocatable(resources):
                return OfferDecision(framework, role, agent.name, resources)
            self._pass("quota_leftover_below_min")
        return None

    def _first_eligible(
        self,
        role: str,
        refused: dict[str, list[Resources | None]] | None,
        offered: frozenset[str] | set[str],
        intolerant: frozenset[str],
        candidate: Resources,
    ) -> str | None:
        left = self.offers_left
        for framework in self.frameworks[role].order():
            if left is not None and left[framework] <= 0:
                self._pass("offer_cap")
                continue  # at its offer cap: the agent goes to the next framework, as if filtered
            if framework in offered:
                continue
            if framework in intolerant:
                self._pass("untolerated_taints")
                continue
            if refused is not None and _is_refused(refused.get(framework), candidate):
                self._pass("filtered")
                continue
            return framework
        return None
