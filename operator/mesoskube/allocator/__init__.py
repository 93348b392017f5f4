"""The allocator: a pure function from a Snapshot of the cluster to OfferDecisions.

No Kubernetes types and no I/O here; the master builds the snapshot and writes the offers.
"""

from mesoskube.allocator.core import allocate
from mesoskube.allocator.snapshot import (
    DEFAULT_ROLE,
    Agent,
    AllocatorConfig,
    Filter,
    FrameworkView,
    OfferDecision,
    RolePolicy,
    Snapshot,
    SorterKind,
    Taint,
    Toleration,
    tolerated,
)
from mesoskube.allocator.sorter import DRFSorter, RandomSorter, Sorter, dominant_share

__all__ = [
    "DEFAULT_ROLE",
    "Agent",
    "AllocatorConfig",
    "DRFSorter",
    "Filter",
    "FrameworkView",
    "OfferDecision",
    "RandomSorter",
    "RolePolicy",
    "Snapshot",
    "Sorter",
    "SorterKind",
    "Taint",
    "Toleration",
    "allocate",
    "dominant_share",
    "tolerated",
]
