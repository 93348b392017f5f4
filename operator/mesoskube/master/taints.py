"""Node taints and framework tolerations (pure): which agents a framework may be offered.

A task pod is bound with spec.nodeName, so kube-scheduler never checks NoSchedule taints: the
master does, by offering a tainted agent only to frameworks that declare the toleration (Framework
spec.tolerations, copied onto their task pods so NoExecute taints do not evict them). Nodes the
cluster autoscaler is about to delete are not offered at all.
"""

from __future__ import annotations

from functools import lru_cache

from mesoskube.allocator.snapshot import Taint, Toleration, tolerated
from mesoskube.master.builders import TOLERATIONS

KEPT_OFF = frozenset({"NoSchedule", "NoExecute"})
# cluster-autoscaler puts this on a node it has chosen to delete (and drains it).
AUTOSCALER_DELETION = "ToBeDeletedByClusterAutoscaler"


def _toleration(t: dict) -> Toleration:
    return Toleration(
        key=t.get("key") or "", operator=t.get("operator") or "Equal", value=t.get("value") or "",
        effect=t.get("effect") or "",
    )  # fmt: skip


BUILT_IN = tuple(_toleration(t) for t in TOLERATIONS)


def node_taints(body: dict) -> tuple[Taint, ...]:
    """The taints that keep tasks off, less those every task pod tolerates (kwok's)."""
    taints = (body.get("spec") or {}).get("taints") or []
    return _kept(tuple((t.get("key") or "", t.get("value") or "", t.get("effect") or "") for t in taints))


@lru_cache(maxsize=1024)
def _kept(taints: tuple[tuple[str, str, str], ...]) -> tuple[Taint, ...]:
    # Memoised: every node heartbeat asks again with the same few taint sets (2% of the master's
    # CPU at 1,000 kwok nodes, uncached).
    kept = (Taint(key, value, effect) for key, value, effect in taints if effect in KEPT_OFF)
    return tuple(t for t in kept if not tolerated(BUILT_IN, (t,)))


def marked_for_deletion(body: dict) -> bool:
    return any(t.get("key") == AUTOSCALER_DELETION for t in (body.get("spec") or {}).get("taints") or [])


def framework_tolerations(spec: dict) -> tuple[Toleration, ...]:
    return tuple(_toleration(t) for t in spec.get("tolerations") or [])
