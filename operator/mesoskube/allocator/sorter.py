"""Sorters: the order in which the allocator visits clients (roles, or frameworks inside a role).

Modelled on Mesos's src/master/allocator/sorter/: a sorter knows each client's weight and
allocation and the cluster total, and `sort()` says who is offered next. The allocator keeps one
sorter for roles and one per role for its frameworks, and reports every decision back with
`allocated()` so later agents in the same cycle see the updated shares.

Allocations are kept as four plain floats rounded to three decimals after each addition, exactly
as Resources arithmetic rounds them, so shares (and therefore every order) are what summing
Resources would give, without building a Resources per decision.
"""

from __future__ import annotations

import bisect
import math
import random
from abc import ABC, abstractmethod

from mesoskube.resources import SCALARS, Resources

_NO_RESOURCES = Resources()


def dominant_share(allocated: Resources, total: Resources) -> float:
    """Max over cpus/mem/disk/gpus of allocated/total; resources the cluster lacks are ignored."""
    share = 0.0
    for name in SCALARS:
        cluster = getattr(total, name)
        if cluster > 0:
            share = max(share, getattr(allocated, name) / cluster)
    return share


def scalars_only(resources: Resources) -> Resources:
    # Ports are not shared out by DRF, and summing ranges across agents is meaningless.
    if not resources.ports:
        return resources
    return Resources(cpus=resources.cpus, mem=resources.mem, disk=resources.disk, gpus=resources.gpus)


class Sorter(ABC):
    """Orders clients for the allocator. Clients are plain names; weights must be positive."""

    def __init__(self, total: Resources) -> None:
        self._total = (total.cpus, total.mem, total.disk, total.gpus)
        self._weights: dict[str, float] = {}
        self._allocations: dict[str, list[float]] = {}

    def add(self, client: str, weight: float = 1.0, allocation: Resources = _NO_RESOURCES) -> None:
        if client in self._weights:
            raise ValueError(f"sorter already has client {client!r}")
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"weight of {client!r} must be positive and finite, got {weight}")
        self._weights[client] = weight
        a = allocation
        self._allocations[client] = [a.cpus, a.mem, a.disk, a.gpus]
        self._added(client)

    def allocated(self, client: str, resources: Resources) -> None:
        """Record that `client` was just given `resources` (Mesos Sorter::allocated)."""
        r = resources
        a = self._allocations[client]
        a[0] = round(a[0] + r.cpus, 3)
        a[1] = round(a[1] + r.mem, 3)
        a[2] = round(a[2] + r.disk, 3)
        a[3] = round(a[3] + r.gpus, 3)
        self._reallocated(client)

    def allocation(self, client: str) -> Resources:
        return Resources(*self._allocations[client])

    def weight(self, client: str) -> float:
        return self._weights[client]

    def share(self, client: str) -> float:
        """Weighted dominant share: what DRF equalises, and what the master reports."""
        # dominant_share() over the floats: the same divisions in the same order.
        a = self._allocations[client]
        share = 0.0
        for i, cluster in enumerate(self._total):
            if cluster > 0:
                share = max(share, a[i] / cluster)
        return share / self._weights[client]

    def __contains__(self, client: object) -> bool:
        return client in self._weights

    def __len__(self) -> int:
        return len(self._weights)

    def sort(self) -> list[str]:
        """Clients in the order they should be offered resources."""
        return list(self.order())

    @abstractmethod
    def order(self) -> list[str]:
        """Like sort(), without a copy: the caller must not change it, and must not hold it past
        the next allocated() (the allocator's hot loop asks once per role per offer)."""

    def _added(self, client: str) -> None:  # noqa: B027 - optional hook
        pass

    def _reallocated(self, client: str) -> None:  # noqa: B027 - optional hook
        pass


class DRFSorter(Sorter):
    """Lowest weighted dominant share first; equal shares by name, so a cycle is reproducible.

    Incremental, as Mesos's sorter is: the order is kept sorted as allocations change (one bisect
    per update), and its list of names is rebuilt only when an update moved someone.
    """

    def __init__(self, total: Resources) -> None:
        super().__init__(total)
        self._keys: dict[str, tuple[float, str]] = {}
        self._order: list[tuple[float, str]] = []
        self._names: list[str] | None = []

    def order(self) -> list[str]:
        if self._names is None:
            self._names = [client for _, client in self._order]
        return self._names

    def _added(self, client: str) -> None:
        key = (self.share(client), client)
        self._keys[client] = key
        at = bisect.bisect_left(self._order, key)
        self._order.insert(at, key)
        self._names = None

    def _reallocated(self, client: str) -> None:
        old = self._keys[client]
        at = bisect.bisect_left(self._order, old)
        key = (self.share(client), client)
        self._keys[client] = key
        # Still between its neighbours (a share only grows, and often a client keeps its place):
        # no list surgery, and the names stay as they were.
        order = self._order
        if (at + 1 >= len(order) or key < order[at + 1]) and (at == 0 or order[at - 1] < key):
            self._order[at] = key
            return
        del self._order[at]
        bisect.insort(self._order, key)
        self._names = None


class RandomSorter(Sorter):
    """A weighted random order, drawn afresh on each `sort()` (Mesos's `random` sorter).

    Allocations do not affect the order; they are kept so shares can still be reported. The draw
    is Efraimidis-Spirakis: key u**(1/w), highest first, so a client of weight 2 leads a client of
    weight 1 two times out of three.
    """

    def __init__(self, total: Resources, rng: random.Random) -> None:
        super().__init__(total)
        self._rng = rng
        self._clients: list[str] = []

    def order(self) -> list[str]:
        # Draw over clients in name order so the result does not depend on insertion order.
        draws = [(self._rng.random() ** (1.0 / self._weights[c]), c) for c in self._clients]
        draws.sort(key=lambda draw: draw[0], reverse=True)
        return [client for _, client in draws]

    def _added(self, client: str) -> None:
        bisect.insort(self._clients, client)
