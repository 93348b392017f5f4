"""Agent health as in Mesos, by the master's own clock (pure: nodes and a time in, changes out).

A node NotReady for `timeout` seconds, as this master observed it, is unreachable: its tasks
become TASK_UNREACHABLE (PARTITION_AWARE frameworks) or TASK_LOST (the others). A node Ready
again is reachable at once; its tasks are looked at again. The node's own condition timestamps are
not used: they come from another clock (the kubelet's or the node controller's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mesoskube.master.cache import NodeInfo


@dataclass
class AgentHealth:
    timeout: float
    unready_since: dict[str, float] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    on_unreachable: Callable[[str, float], None] | None = None  # (agent, seconds NotReady): logging

    def observe(self, nodes: Iterable[NodeInfo], now: float) -> set[str]:
        """Agents whose reachability changed at `now`."""
        changed: set[str] = set()
        for n in nodes:
            if n.ready:
                self.unready_since.pop(n.name, None)
                if n.name in self.unreachable:
                    self.unreachable.discard(n.name)
                    changed.add(n.name)
                continue
            since = self.unready_since.setdefault(n.name, now)
            if n.name not in self.unreachable and now - since >= self.timeout:
                self.unreachable.add(n.name)
                changed.add(n.name)
                if self.on_unreachable:
                    self.on_unreachable(n.name, now - since)
        return changed

    def forget(self, agent: str) -> None:
        """The node was deleted: its tasks are LOST by another rule, and nothing is kept of it."""
        self.unready_since.pop(agent, None)
        self.unreachable.discard(agent)

    def is_unreachable(self, agent: str) -> bool:
        return agent in self.unreachable
