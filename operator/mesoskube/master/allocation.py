"""The allocation cycle: an immutable snapshot of the cache, the pure allocator, Offer writes.

A mixin of the master's Engine (engine.py), which holds the state these methods share.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from types import MappingProxyType

from kubernetes.client.exceptions import ApiException

from mesoskube import metrics
from mesoskube.allocator import allocate
from mesoskube.allocator.snapshot import Agent, Filter, FrameworkView, OfferDecision, Snapshot
from mesoskube.api.models import DEFAULT_ROLE, FrameworkPhase, OfferPhase
from mesoskube.master.builders import offer_manifest
from mesoskube.master.cache import format_time
from mesoskube.master.objects import (
    add_into,
    framework_key,
    is_terminal,
    ns_name,
    offer_phase,
    resources_of,
    role_policy,
)
from mesoskube.master.taints import framework_tolerations
from mesoskube.resources import Resources, subtract_ranges

log = logging.getLogger("mesoskube.master")


class AllocationCycle:
    def snapshot(self, now: float) -> Snapshot:
        # The hot path of every cycle: parsed resources are memoised on the cached bodies, and sums
        # are kept as plain floats, building one Resources per agent rather than one per addition.
        with self.cache.lock:
            nodes = [n for n in self.cache.nodes.values() if n.offerable and self.agent_matches(n.labels)]
            held: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
            held_ports: dict[str, list] = defaultdict(list)
            alloc: dict[str, dict[str, list[float]]] = defaultdict(
                lambda: defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
            )
            pods = self.cache.pods
            for k, t in self.cache.tasks.items():
                if is_terminal(t):
                    continue
                r = resources_of(t)
                spec = t["spec"]
                add_into(
                    alloc[framework_key(t["metadata"]["namespace"], spec["framework"])][
                        spec.get("role") or DEFAULT_ROLE
                    ],
                    r,
                )
                if k not in pods:
                    add_into(held[spec["agent"]], r)
            outstanding: dict[str, int] = defaultdict(int)
            for o in self.cache.offers.values():
                if offer_phase(o) != OfferPhase.OUTSTANDING.value:
                    continue
                r = resources_of(o)
                spec = o["spec"]
                outstanding[framework_key(o["metadata"]["namespace"], spec["framework"])] += 1
                add_into(held[spec["agent"]], r)
                if r.ports:
                    held_ports[spec["agent"]].extend(r.ports)
                add_into(
                    alloc[framework_key(o["metadata"]["namespace"], spec["framework"])][
                        spec.get("role") or DEFAULT_ROLE
                    ],
                    r,
                )
            agents = []
            none = Resources()
            for n in nodes:
                used = self.cache.node_usage.get(n.name, none)
                a, h = n.allocatable, held.get(n.name, (0.0, 0.0, 0.0, 0.0))
                taken_ports = used.ports + tuple(held_ports.get(n.name, ()))
                total = self._agent_total(n)
                available = Resources(
                    a.cpus - used.cpus - h[0] if a.cpus > used.cpus + h[0] else 0.0,
                    a.mem - used.mem - h[1] if a.mem > used.mem + h[1] else 0.0,
                    a.disk - used.disk - h[2] if a.disk > used.disk + h[2] else 0.0,
                    a.gpus - used.gpus - h[3] if a.gpus > used.gpus + h[3] else 0.0,
                    subtract_ranges(self.port_ranges, taken_ports) if taken_ports else self.port_ranges,
                )
                agents.append(Agent(n.name, total, available, MappingProxyType(n.labels), n.taints))
            allocated = {
                fw: {role: Resources(*v) for role, v in roles.items()} for fw, roles in alloc.items()
            }
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
                        allocated=MappingProxyType(allocated.get(k, {})),
                        outstanding_offers=outstanding.get(k, 0),
                        tolerations=framework_tolerations(sp),
                    )
                )
            roles = {name: role_policy(name, body) for name, body in self.cache.roles.items()}
        # After the cache was read: a decline swept away unprocessed was queued before its offer
        # left the cache, so either its resources were still held above or its filter is here.
        self._apply_late_declines(now)
        filters = tuple(
            Filter(fw, agent, until, refused)
            for (fw, agent), (until, refused) in self.filters.items()
            if until > now
        )
        return Snapshot(
            agents=tuple(agents), frameworks=tuple(frameworks), roles=MappingProxyType(roles), filters=filters
        )

    def _agent_total(self, node) -> Resources:
        cached = self._totals.get(node.name)
        if cached is None or cached[0] is not node:
            a = node.allocatable
            cached = self._totals[node.name] = (
                node,
                Resources(a.cpus, a.mem, a.disk, a.gpus, self.port_ranges),
            )
        return cached[1]

    def allocate(self, now: float) -> None:
        started = time.perf_counter()
        self.allocation_requested = False
        self.last_allocation = now
        self.filters = {k: v for k, v in self.filters.items() if v[0] > now}
        snap = self.snapshot(now)
        t0 = time.perf_counter()
        decisions = allocate(snap, now, self.allocator_config)
        metrics.allocator_duration.observe(time.perf_counter() - t0)
        if decisions:
            with self.cache.lock:
                fws = {k: self.cache.frameworks.get(k) for k in {d.framework for d in decisions}}
                labels = {a.name: dict(a.attributes) for a in snap.agents}
            expires = format_time(now + self.settings.offerTimeout) if self.settings.offerTimeout else None
            self._run_all(
                lambda d: self._send_offer(d, fws.get(d.framework), labels.get(d.agent, {}), expires),
                decisions,
            )
        metrics.allocation_runs.inc()
        metrics.allocation_duration.observe(time.perf_counter() - started)
        metrics.agents.set(len(snap.agents))

    def _send_offer(self, d: OfferDecision, fw: dict | None, attributes: dict, expires: str | None) -> None:
        if fw is None:
            return
        ns, name = ns_name(d.framework)
        body = offer_manifest(name, fw["metadata"]["uid"], d.role, d.agent, d.resources, attributes, expires)
        body["metadata"]["namespace"] = ns
        try:
            created = self.kube.create("offers", ns, body)
        except ApiException as e:
            log.warning("offer for %s on %s not created: %s", d.framework, d.agent, e.reason)
            return
        created.setdefault("status", {})
        self.provenance.made(created)
        self.cache.upsert("offers", created)
        metrics.offers.labels(event="sent").inc()
