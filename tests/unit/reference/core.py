"""The allocator as it was before the hot loop was rewritten (commit 3cc3769), kept verbatim as an
oracle: the equivalence tests check the new allocator makes the same decisions and counts the same
pass-overs on random snapshots. Not used by the master."""

from __future__ import annotations

import random
from dataclasses import dataclass

from mesoskube.allocator.snapshot import (
    Agent,
    AllocatorConfig,
    FrameworkView,
    OfferDecision,
    RolePolicy,
    Snapshot,
    SorterKind,
    tolerated,
)
from mesoskube.resources import SCALARS, Resources
from tests.unit.reference.sorter import DRFSorter, RandomSorter, Sorter, scalars_only

_NO_RESOURCES = Resources()
_NONE_REFUSED: dict[str, list[Resources | None]] = {}
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
    was skipped for an agent ("filtered", "offer_cap") or an agent was left unoffered
    ("below_min_allocatable", "no_eligible_framework").
    """
    rng = cycle_rng(config.seed, cycle)
    cycle_state = _Cycle.build(snapshot, now, config, rng)
    cycle_state.passed_over = passed_over
    decisions: list[OfferDecision] = []
    for agent in _shuffled(snapshot.agents, rng):
        decisions.extend(cycle_state.allocate_agent(agent))
    return decisions


def _shuffled(agents: tuple[Agent, ...], rng: random.Random) -> list[Agent]:
    # Mesos shuffles agents so no node is always offered first; sorting first makes the shuffle
    # depend on the seed alone, not on the order the master's indexes happened to list agents.
    order = sorted(agents, key=lambda agent: agent.name)
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


def _is_allocatable(resources: Resources, minimums: tuple[Resources, ...]) -> bool:
    """Mesos --min_allocatable_resources: holds at least one of the minimum quantities."""
    if resources.is_empty():
        return False
    if not minimums:
        return True
    return any(_contains_scalars(resources, minimum) for minimum in minimums)


def _contains_scalars(resources: Resources, minimum: Resources) -> bool:
    # Resources.contains also compares port ranges, which minimums rarely have; this runs once or
    # twice per agent per cycle, so skip the range arithmetic when it cannot matter.
    if minimum.ports:
        return resources.contains(minimum)
    return (
        resources.cpus >= minimum.cpus
        and resources.mem >= minimum.mem
        and resources.disk >= minimum.disk
        and resources.gpus >= minimum.gpus
    )


def _quota_starves(headroom: Resources) -> bool:
    """A role at its cpu (or mem) quota gets no offer: a 0-cpu offer of an agent's memory runs
    nothing useful and holds the memory away from every other role (Mesos's quota headroom likewise
    offers no resources beyond the limit). Also on an agent whose cpus are all used: its leftover
    memory went to the role at quota before, for every agent."""
    return headroom.cpus <= 0 or headroom.mem <= 0


def _quota_headroom(policy: RolePolicy | None, held: Resources) -> Resources | None:
    """What the role may still be given, or None when it has no quota limit."""
    if policy is None or policy.quota_limit is None:
        return None
    return policy.quota_limit - held


@dataclass
class _Cycle:
    """The state one allocate() call threads through its agents."""

    roles: Sorter
    frameworks: dict[str, Sorter]  # role -> sorter over its offerable frameworks
    policies: dict[str, RolePolicy]
    filtered: dict[str, dict[str, list[Resources | None]]]  # agent -> framework -> refused resources
    min_allocatable: tuple[Resources, ...]
    offers_left: dict[str, int] | None  # framework -> offers it may still be sent; None = no cap
    views: dict[str, FrameworkView]
    passed_over: dict[str, int] | None = None  # reason -> count, when the caller asks

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
        for role, members in sorted(_offerable_roles(snapshot.frameworks).items()):
            policy = snapshot.roles.get(role)
            roles.add(role, weight=policy.weight if policy else 1.0, allocation=held.get(role, _NO_RESOURCES))
            frameworks[role] = sorter = new_sorter()
            for framework in members:
                sorter.add(framework.key, allocation=framework.allocated.get(role, _NO_RESOURCES))
        return cls(
            roles=roles,
            frameworks=frameworks,
            policies=dict(snapshot.roles),
            filtered=_active_filters(snapshot, now),
            min_allocatable=config.min_allocatable,
            offers_left={
                fw.key: config.max_offers_per_framework - fw.outstanding_offers for fw in snapshot.frameworks
            }
            if config.max_offers_per_framework
            else None,
            views={fw.key: fw for fw in snapshot.frameworks},
        )

    def allocate_agent(self, agent: Agent) -> list[OfferDecision]:
        remaining = agent.available
        offered: set[str] = set()  # Mesos makes at most one offer per framework per agent
        decisions: list[OfferDecision] = []
        if self.passed_over is not None and not _is_allocatable(remaining, self.min_allocatable):
            self._pass("below_min_allocatable")
        while _is_allocatable(remaining, self.min_allocatable):
            decision = self._next_offer(agent, remaining, offered)
            if decision is None:
                if not decisions:
                    self._pass("no_eligible_framework")
                break
            decisions.append(decision)
            offered.add(decision.framework)
            self._record(decision)
            if decision.resources is remaining:
                break  # the whole agent went; the common case, so skip the subtraction
            # Ports leave with this offer; only a quota-capped scalar leftover can remain.
            remaining = remaining - decision.resources
        return decisions

    def _pass(self, reason: str) -> None:
        if self.passed_over is not None:
            self.passed_over[reason] = self.passed_over.get(reason, 0) + 1

    def _record(self, decision: OfferDecision) -> None:
        # Later agents in this cycle must see the new shares, or DRF would not interleave.
        scalars = scalars_only(decision.resources)
        self.roles.allocated(decision.role, scalars)
        self.frameworks[decision.role].allocated(decision.framework, scalars)
        if self.offers_left is not None:
            self.offers_left[decision.framework] -= 1

    def _next_offer(self, agent: Agent, remaining: Resources, offered: set[str]) -> OfferDecision | None:
        refused = self.filtered.get(agent.name, _NONE_REFUSED)
        # A framework that does not tolerate the agent's taints is passed over like a filtered one.
        if agent.taints:
            offered = offered | {
                k for k, fw in self.views.items() if not tolerated(fw.tolerations, agent.taints)
            }
        for role in self.roles.sort():
            headroom = _quota_headroom(self.policies.get(role), self.roles.allocation(role))
            if headroom is not None and _quota_starves(headroom):
                continue
            resources = remaining if headroom is None else remaining.min_with(headroom)
            framework = self._first_eligible(role, refused, offered, resources)
            if framework is None:
                continue
            if resources is remaining or _is_allocatable(resources, self.min_allocatable):
                return OfferDecision(framework=framework, role=role, agent=agent.name, resources=resources)
        return None

    def _first_eligible(
        self, role: str, refused: dict[str, list[Resources | None]], offered: set[str], candidate: Resources
    ) -> str | None:
        left = self.offers_left
        for framework in self.frameworks[role].sort():
            if left is not None and left[framework] <= 0:
                self._pass("offer_cap")
                continue  # at its offer cap: the agent goes to the next framework, as if filtered
            if framework in offered:
                continue
            if _is_refused(refused.get(framework), candidate):
                self._pass("filtered")
                continue
            return framework
        return None
