"""What tasks and offers hold, kept up to date as the cache changes (never re-walked per cycle).

Mesos counts a framework's allocation as its tasks plus its outstanding offers, and an agent's
free resources as its total minus both. Here pods already count on their node (the cache's
node_usage), so an agent also loses what its tasks whose pods the watch has not shown yet hold
(host ports included: offered again, they would be launched twice) and what its outstanding offers
hold. Each task or offer contributes one claim; an update replaces the object's claim, so every
total is the sum of the claims in force, kept in milli-units as integers: adding and removing
thousands of claims never drifts, and a total equals a full recount exactly.

A task inside its Offer (an accept the pipelined engine is still working: the Task is in the cache,
its Offer still outstanding) holds nothing of its own until the Offer goes: the Offer, on the same
agent and no smaller, holds for both. Counting both doubled the framework's share and skewed DRF
(test_weighted_roles_share_the_cluster_one_to_two ended 36:12 and 28:20, not 32:16).

Agents whose held resources changed are reported to subscribers (the allocation cycle), which
rebuild only those agents' views: an event-triggered cycle costs what changed, not the cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from mesoskube.api.models import DEFAULT_ROLE, TERMINAL_TASK_STATES, OfferPhase
from mesoskube.master import LABEL_MASTER_MADE
from mesoskube.master.objects import framework_key, offer_phase, resources_of
from mesoskube.resources import PortRange, Resources

log = logging.getLogger("mesoskube.master")

Milli = tuple[int, int, int, int]  # cpus, mem, disk, gpus, each x 1000
ZERO: Milli = (0, 0, 0, 0)
_TERMINAL = frozenset(s.value for s in TERMINAL_TASK_STATES)
_OUTSTANDING = OfferPhase.OUTSTANDING.value


def milli(r: Resources) -> Milli:
    # Resources keep three decimals, so x * 1000 is an integer up to float error; round() finds it.
    return (round(r.cpus * 1000), round(r.mem * 1000), round(r.disk * 1000), round(r.gpus * 1000))


def from_milli(m: Iterable[int]) -> Resources:
    c, mem, d, g = m
    return Resources(c / 1000, mem / 1000, d / 1000, g / 1000)


class Claim(NamedTuple):
    """One task's or offer's hold: on its framework's role always, on its agent when `on_agent`."""

    framework: str
    role: str
    agent: str
    resources: Resources
    on_agent: bool


def task_claim(task: dict, has_pod: bool) -> Claim | None:
    """A non-terminal task holds its resources in its role; on its agent only until its pod shows
    (from then on the pod counts in the node's usage)."""
    if ((task.get("status") or {}).get("state")) in _TERMINAL:
        return None
    spec = task["spec"]
    return Claim(
        framework_key(task["metadata"]["namespace"], spec["framework"]),
        spec.get("role") or DEFAULT_ROLE,
        spec["agent"],
        resources_of(task),
        not has_pod,
    )


def offer_claim(offer: dict) -> Claim | None:
    """An outstanding offer holds its resources on its agent and in its framework's role (answered
    but not yet processed included: until the master handles the answer it is still outstanding)."""
    if offer_phase(offer) != _OUTSTANDING:
        return None
    spec = offer["spec"]
    return Claim(
        framework_key(offer["metadata"]["namespace"], spec["framework"]),
        spec.get("role") or DEFAULT_ROLE,
        spec["agent"],
        resources_of(offer),
        True,
    )


def _offer_key(task: dict | None) -> str | None:
    offer = ((task or {}).get("spec") or {}).get("offer")
    return f"{task['metadata']['namespace']}/{offer}" if offer else None


class Holdings:
    """The running totals of every claim. Not locked itself: the cache calls it under its lock."""

    def __init__(self) -> None:
        self._claims: dict[str, dict[str, Claim]] = {"tasks": {}, "offers": {}}
        self._agent: dict[str, list[int]] = {}  # agent -> held on it, milli
        self._agent_ports: dict[str, dict[tuple[str, str], tuple[PortRange, ...]]] = {}
        # framework -> role -> [cpus, mem, disk, gpus (milli), claims]: a role with claims of
        # nothing is still listed, as a recount of the tasks and offers would list it
        self._allocated: dict[str, dict[str, list[int]]] = {}
        self._outstanding: dict[str, int] = {}  # framework -> outstanding offers
        self._subscribers: list[set[str]] = []
        self._keys: dict[str, str] = {}  # one string per framework key, shared by its claims
        # Claims of tasks inside their outstanding Offer, held back until it goes: offer -> task -> claim
        self._inside: dict[str, dict[str, Claim]] = {}
        self._inside_of: dict[str, str] = {}  # task -> the offer it is inside
        # A framework's own tasks inside their Offer, and those whose Offer went (take_released).
        self._framework_made: set[str] = set()
        self.released: set[str] = set()

    # ---- changes
    def subscribe(self) -> set[str]:
        """A set the names of agents whose held resources change are added to; the subscriber
        empties it (under the cache's lock) when it has looked at them."""
        changes: set[str] = set()
        self._subscribers.append(changes)
        return changes

    def touch(self, agent: str) -> None:
        """Tell subscribers `agent` changed (its node or its pods' usage, which the cache keeps)."""
        for s in self._subscribers:
            s.add(agent)

    def set(self, store: str, key: str, body: dict | None, has_pod: bool = False) -> None:
        """The claim of `store`/`key` is now that of `body` (None: the object is gone)."""
        claim = None
        if body is not None:
            try:
                claim = task_claim(body, has_pod) if store == "tasks" else offer_claim(body)
            except (KeyError, TypeError, ValueError) as e:  # a malformed object holds nothing
                log.debug("%s %s holds nothing: %s", store, key, e)
        claims = self._claims[store]
        if store == "tasks":
            was_in = self._inside_of.pop(key, None)
            if was_in is not None:
                self._inside[was_in].pop(key, None)
                if not self._inside[was_in]:
                    del self._inside[was_in]
            offer = _offer_key(body) if claim is not None else None
            held_by = self._claims["offers"].get(offer) if offer is not None else None
            # Only inside an Offer it could have come from: a Task naming another framework's
            # Offer, or one on another agent, must not hide what it holds behind it.
            if held_by is not None and (held_by.framework, held_by.agent) == (claim.framework, claim.agent):
                old = claims.pop(key, None)
                if old is not None:
                    self._apply(store, key, old, -1)
                self._inside.setdefault(offer, {})[key] = claim
                self._inside_of[key] = offer
                if (body["metadata"].get("labels") or {}).get(LABEL_MASTER_MADE) != "true":
                    self._framework_made.add(key)
                return
            self._framework_made.discard(key)
            if body is None:
                self.released.discard(key)  # bounded where nobody takes them (a standby)
        old = claims.get(key)
        if old == claim:
            return
        if old is not None:
            self._apply(store, key, old, -1)
        if claim is None:
            claims.pop(key, None)
        else:
            claim = claim._replace(framework=self._keys.setdefault(claim.framework, claim.framework))
            claims[key] = claim
            self._apply(store, key, claim, 1)
        if store == "offers" and claim is None and key in self._inside:
            # The Offer went (its accept done, or it closed): its tasks hold their own now.
            for task, held in self._inside.pop(key).items():
                del self._inside_of[task]
                self._claims["tasks"][task] = held
                self._apply("tasks", task, held, 1)
                if task in self._framework_made:
                    self._framework_made.discard(task)
                    self.released.add(task)

    @property
    def inside(self) -> Mapping[str, str]:
        """Task -> the outstanding Offer it is inside (read under the cache's lock)."""
        return self._inside_of

    def take_released(self) -> set[str]:
        """Tasks whose Offer went since the last call: a framework's own Task waiting inside its
        Offer for the accept that names it is looked at again (launched, or refused)."""
        released, self.released = self.released, set()
        return released

    def _apply(self, store: str, key: str, claim: Claim, sign: int) -> None:
        m = milli(claim.resources)
        roles = self._allocated.setdefault(claim.framework, {})
        acc = roles.setdefault(claim.role, [0, 0, 0, 0, 0])
        for i in range(4):
            acc[i] += sign * m[i]
        acc[4] += sign
        if not acc[4]:
            del roles[claim.role]
            if not roles:  # the framework holds nothing any more: forget its key too
                del self._allocated[claim.framework]
                self._keys.pop(claim.framework, None)
        if store == "offers":
            n = self._outstanding.get(claim.framework, 0) + sign
            if n:
                self._outstanding[claim.framework] = n
            else:
                self._outstanding.pop(claim.framework, None)
        if not claim.on_agent:
            return
        held = self._agent.setdefault(claim.agent, [0, 0, 0, 0])
        for i in range(4):
            held[i] += sign * m[i]
        if claim.resources.ports:
            ports = self._agent_ports.setdefault(claim.agent, {})
            if sign > 0:
                ports[(store, key)] = claim.resources.ports
            else:
                ports.pop((store, key), None)
                if not ports:
                    del self._agent_ports[claim.agent]
        if sign < 0 and held == [0, 0, 0, 0] and claim.agent not in self._agent_ports:
            del self._agent[claim.agent]
        self.touch(claim.agent)

    # ---- reads (under the cache's lock)
    def held_on(self, agent: str) -> tuple[Milli, tuple[PortRange, ...]]:
        """What pod-less tasks and outstanding offers hold on `agent`: scalars, and host ports."""
        held = self._agent.get(agent)
        ports = self._agent_ports.get(agent)
        flat: tuple[PortRange, ...] = ()
        if ports:
            flat = tuple(r for rs in ports.values() for r in rs)
        return (tuple(held) if held else ZERO), flat  # type: ignore[return-value]

    def allocated(self, framework: str) -> dict[str, Resources]:
        """Role -> what `framework`'s non-terminal tasks and outstanding offers hold there."""
        return {role: from_milli(m[:4]) for role, m in self._allocated.get(framework, {}).items()}

    def outstanding(self, framework: str) -> int:
        return self._outstanding.get(framework, 0)

    def by_role(self) -> dict[str, Resources]:
        """Role -> what every framework's non-terminal tasks and outstanding offers hold there."""
        acc: dict[str, list[int]] = {}
        for roles in self._allocated.values():
            for role, m in roles.items():
                a = acc.setdefault(role, [0, 0, 0, 0])
                for i in range(4):
                    a[i] += m[i]
        return {role: from_milli(m) for role, m in acc.items()}

    def state(self) -> dict:
        """Every total, for tests comparing them with a full recount."""
        return {
            "agents": {a: tuple(m) for a, m in self._agent.items() if any(m)},
            "agent_ports": {
                a: sorted(r for rs in ports.values() for r in rs) for a, ports in self._agent_ports.items()
            },
            "allocated": {
                fw: {role: tuple(m[:4]) for role, m in roles.items()} for fw, roles in self._allocated.items()
            },
            "outstanding": dict(self._outstanding),
        }
