"""The allocator's input and output: immutable values, no Kubernetes types.

The master builds a Snapshot from its indexes each allocation cycle; the allocator returns
OfferDecisions; the master turns those into Offer objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from mesoskube.resources import Resources

DEFAULT_ROLE = "*"


class SorterKind(StrEnum):
    DRF = "drf"
    RANDOM = "random"


@dataclass(frozen=True, slots=True)
class Taint:
    """A node taint that keeps tasks off (NoSchedule or NoExecute; PreferNoSchedule is not kept)."""

    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True, slots=True)
class Toleration:
    """Kubernetes toleration semantics: Exists matches any value (and, with no key, any taint);
    Equal needs the value; no effect matches every effect."""

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.operator == "Exists":
            return not self.key or self.key == taint.key
        return self.key == taint.key and self.value == taint.value


def tolerated(tolerations: tuple[Toleration, ...], taints: tuple[Taint, ...]) -> bool:
    return all(any(t.tolerates(taint) for t in tolerations) for taint in taints)


@dataclass(frozen=True, slots=True)
class Agent:
    """A node offered as a Mesos agent."""

    name: str
    total: Resources
    # Allocatable minus requests of every non-terminal pod on the node, minus outstanding offers.
    available: Resources
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Offered only to frameworks that tolerate every one of them.
    taints: tuple[Taint, ...] = ()


@dataclass(frozen=True, slots=True)
class FrameworkView:
    """A subscribed framework as the allocator sees it. `key` is "namespace/name"."""

    key: str
    roles: tuple[str, ...] = (DEFAULT_ROLE,)
    suppressed_roles: frozenset[str] = frozenset()
    # Resources held per role: non-terminal tasks plus outstanding offers (Mesos counts both).
    allocated: Mapping[str, Resources] = field(default_factory=lambda: MappingProxyType({}))
    outstanding_offers: int = 0
    tolerations: tuple[Toleration, ...] = ()


@dataclass(frozen=True, slots=True)
class RolePolicy:
    name: str
    weight: float = 1.0
    # Upper bound on what the role may hold (scalars only); None = no limit.
    quota_limit: Resources | None = None


@dataclass(frozen=True, slots=True)
class Filter:
    """A refusal filter: until `expires_at` (clock seconds), `agent` is not offered to `framework`
    while what it would offer fits inside `resources` (what was declined or left unused), as in
    Mesos's RefusedOfferFilter. `resources=None` filters the agent whatever it holds."""

    framework: str
    agent: str
    expires_at: float
    resources: Resources | None = None


@dataclass(frozen=True, slots=True)
class AllocatorConfig:
    # Mesos --min_allocatable_resources "cpus:0.01|mem:32": a leftover is offerable if it holds
    # at least one of these quantities.
    min_allocatable: tuple[Resources, ...] = (Resources(cpus=0.01), Resources(mem=32))
    sorter: SorterKind = SorterKind.DRF
    seed: int = 0
    # Outstanding offers a framework may hold; 0 = no limit (Mesos offers every free agent).
    max_offers_per_framework: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    agents: tuple[Agent, ...]
    frameworks: tuple[FrameworkView, ...]
    roles: Mapping[str, RolePolicy] = field(default_factory=lambda: MappingProxyType({}))
    filters: tuple[Filter, ...] = ()
    # The whole cluster's resources, for shares, when `agents` holds only some of them (an
    # event-triggered cycle over candidate agents); None = the sum of `agents`.
    total: Resources | None = None


@dataclass(frozen=True, slots=True)
class OfferDecision:
    framework: str
    role: str
    agent: str
    resources: Resources
