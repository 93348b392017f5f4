"""The sorters as they were before (commit 3cc3769), the oracle of tests/unit/reference/core.py."""

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
        self._total = scalars_only(total)
        self._weights: dict[str, float] = {}
        self._allocations: dict[str, Resources] = {}

    def add(self, client: str, weight: float = 1.0, allocation: Resources = _NO_RESOURCES) -> None:
        if client in self._weights:
            raise ValueError(f"sorter already has client {client!r}")
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"weight of {client!r} must be positive and finite, got {weight}")
        self._weights[client] = weight
        self._allocations[client] = scalars_only(allocation)
        self._added(client)

    def allocated(self, client: str, resources: Resources) -> None:
        """Record that `client` was just given `resources` (Mesos Sorter::allocated)."""
        self._allocations[client] = self._allocations[client] + scalars_only(resources)
        self._reallocated(client)

    def allocation(self, client: str) -> Resources:
        return self._allocations[client]

    def weight(self, client: str) -> float:
        return self._weights[client]

    def share(self, client: str) -> float:
        """Weighted dominant share: what DRF equalises, and what the master reports."""
        return dominant_share(self._allocations[client], self._total) / self._weights[client]

    def __contains__(self, client: object) -> bool:
        return client in self._weights

    def __len__(self) -> int:
        return len(self._weights)

    @abstractmethod
    def sort(self) -> list[str]:
        """Clients in the order they should be offered resources."""

    def _added(self, client: str) -> None:  # noqa: B027 - optional hook
        pass

    def _reallocated(self, client: str) -> None:  # noqa: B027 - optional hook
        pass


class DRFSorter(Sorter):
    """Lowest weighted dominant share first; equal shares by name, so a cycle is reproducible.

    The order is kept sorted as allocations change (one bisect per update) instead of re-sorting
    every client for every agent: the allocator asks for the order once per offer it makes.
    """

    def __init__(self, total: Resources) -> None:
        super().__init__(total)
        self._keys: dict[str, tuple[float, str]] = {}
        self._order: list[tuple[float, str]] = []

    def sort(self) -> list[str]:
        return [client for _, client in self._order]

    def _added(self, client: str) -> None:
        key = (self.share(client), client)
        self._keys[client] = key
        bisect.insort(self._order, key)

    def _reallocated(self, client: str) -> None:
        old = self._keys[client]
        del self._order[bisect.bisect_left(self._order, old)]
        self._added(client)


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

    def sort(self) -> list[str]:
        # Draw over clients in name order so the result does not depend on insertion order.
        draws = [(self._rng.random() ** (1.0 / self._weights[c]), c) for c in self._clients]
        draws.sort(key=lambda draw: draw[0], reverse=True)
        return [client for _, client in draws]

    def _added(self, client: str) -> None:
        bisect.insort(self._clients, client)
