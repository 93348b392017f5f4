"""Offers that must close: agent gone, framework gone, offerTimeout, resources taken by others;
one Event per framework and cause; closed offers deleted after offerRetention.

A part with declared dependencies: it reads the cache, decides which offers close, and hands the
writes to the Writer (through `run_all`, the engine's write pool).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from mesoskube import metrics
from mesoskube.api.models import AnswerType, FrameworkPhase, OfferPhase
from mesoskube.master.cache import Cache, format_time, key_of, parse_time
from mesoskube.master.contract import closed_at
from mesoskube.master.events import EventRecorder
from mesoskube.master.objects import add_into, framework_key, is_terminal, offer_phase, resources_of
from mesoskube.master.writer import ApiError, Writer
from mesoskube.resources import SCALARS, Resources
from mesoskube.settings import Settings

# The check for agents taken by pods the master did not launch walks every agent with an offer and
# its usage under the cache's lock: at 1,000 agents it was a fifth of the master's busy samples at
# a steady load (bench/results/latency.md), once per engine step, and the pipelined engine steps
# at every event. Taken resources are rare and an offer of them fails at launch anyway: at most
# once a second (the engine's clock) is soon enough.
OVERCOMMIT_INTERVAL = 1.0

log = logging.getLogger("mesoskube.master")


@dataclass
class OfferHousekeeping:
    writer: Writer
    cache: Cache
    clock: Callable[[], float]
    settings: Settings
    agent_matches: Callable[[Mapping[str, str]], bool]
    events: EventRecorder
    run_all: Callable[[Callable, Iterable], list]
    request_allocation: Callable[[Iterable[str] | None], None]
    last_overcommit_check: float = field(default=float("-inf"))
    bulk_delete: bool = True  # off when the API server or RBAC refuses the field-selected delete

    def rescind_offers(
        self,
        which: Callable[[dict], bool],
        reason: str,
        message: str,
        phase: OfferPhase = OfferPhase.RESCINDED,
    ) -> int:
        with self.cache.lock:
            victims = [
                o
                for o in self.cache.offers.values()
                if offer_phase(o) == OfferPhase.OUTSTANDING.value and not o["spec"].get("answer") and which(o)
            ]
        now = format_time(self.clock())

        def rescind(o: dict) -> None:
            ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
            try:
                body = self.writer.patch_status(
                    "offers",
                    ns,
                    name,
                    {"status": {"phase": phase.value, "reason": reason, "message": message, "closedAt": now}},
                )
            except ApiError as e:
                if e.status != 404:  # still outstanding in the cache: housekeeping tries again next step
                    log.warning("rescinding offer %s/%s: %s", ns, name, e)
                return
            self.cache.upsert("offers", body)
            metrics.offers.labels(event="expired" if phase == OfferPhase.EXPIRED else "rescinded").inc()

        self.run_all(rescind, victims)
        if victims:
            self.request_allocation({o["spec"]["agent"] for o in victims})
            if reason != "REASON_FRAMEWORK_REMOVED":  # nobody is left to read it
                self._record_closed_offers(victims, phase, reason, message)
        return len(victims)

    def remove_framework_offers(self, ns: str, framework: str, message: str) -> int:
        """TEARDOWN: the removed framework's offers go with one request, its accepts excepted (an
        answered accept is the framework's, worked and dropped by the answer queue). Rescinding
        them one by one was a status patch each that nobody reads, on the engine's loop: for a
        framework holding the cap's 256 offers, 5 s of every framework's allocation at QPS 50."""
        with self.cache.lock:
            victims = [
                o
                for o in self.cache.offers.values()
                if o["metadata"]["namespace"] == ns
                and o["spec"]["framework"] == framework
                and (o["spec"].get("answer") or {}).get("type") != AnswerType.ACCEPT.value
            ]
        if not victims:
            return 0
        if self.bulk_delete:
            try:
                self.writer.delete_collection(
                    "offers", ns, f"spec.framework={framework},spec.answer.type!={AnswerType.ACCEPT.value}"
                )
            except ApiError as e:
                if e.status not in (400, 403, 404, 405):
                    raise  # the TEARDOWN comes back with backoff (the framework queue)
                log.warning("bulk delete of a removed framework's offers refused (%s); one by one", e.reason)
                self.bulk_delete = False
        if not self.bulk_delete:
            return self.rescind_offers(
                lambda o: o["spec"]["framework"] == framework and o["metadata"]["namespace"] == ns,
                "REASON_FRAMEWORK_REMOVED",
                message,
            )
        with self.cache.lock:
            for o in victims:
                self.cache.pop("offers", key_of(o))
        metrics.offers.labels(event="rescinded").inc(
            sum(1 for o in victims if offer_phase(o) == OfferPhase.OUTSTANDING.value)
        )
        self.request_allocation({o["spec"]["agent"] for o in victims})
        return len(victims)

    def _record_closed_offers(self, offers: list[dict], phase: OfferPhase, reason: str, message: str) -> None:
        """One Event per framework and cause, not one per offer: a node going away can close an offer
        of every framework at once, and a restart of many nodes thousands; the Offers themselves
        carry the details on their status."""
        by_framework: dict[str, list[str]] = defaultdict(list)
        for o in offers:
            by_framework[framework_key(o["metadata"]["namespace"], o["spec"]["framework"])].append(
                o["spec"]["agent"]
            )
        verb = "expired" if phase == OfferPhase.EXPIRED else "rescinded"
        for key, agents in by_framework.items():
            with self.cache.lock:
                fw = self.cache.frameworks.get(key)
            if fw is None:
                continue
            shown = ", ".join(sorted(agents)[:5]) + (
                f" and {len(agents) - 5} more" if len(agents) > 5 else ""
            )
            plural = "s" if len(agents) != 1 else ""
            summary = f"{len(agents)} offer{plural} {verb} ({reason}: {message}) on {shown}"
            self.events.normal(fw, f"Offers{verb.capitalize()}", summary)

    def housekeep_offers(self, now: float) -> None:
        with self.cache.lock:
            nodes = dict(self.cache.nodes)
            frameworks = dict(self.cache.frameworks)

        def agent_gone(o: dict) -> bool:
            node = nodes.get(o["spec"]["agent"])
            return node is None or not node.offerable or not self.agent_matches(node.labels)

        def framework_gone(o: dict) -> bool:
            fw = frameworks.get(framework_key(o["metadata"]["namespace"], o["spec"]["framework"]))
            return fw is None or (fw.get("status") or {}).get("phase") != FrameworkPhase.SUBSCRIBED.value

        def expired(o: dict) -> bool:
            t = parse_time(o["spec"].get("expiresAt"))
            return t is not None and t <= now

        self.rescind_offers(agent_gone, "REASON_AGENT_REMOVED", "the agent is gone, not Ready or cordoned")
        self.rescind_offers(
            framework_gone, "REASON_FRAMEWORK_REMOVED", "the framework is no longer subscribed"
        )
        self.rescind_offers(
            expired, "REASON_OFFER_TIMEOUT", "offerTimeout passed without an answer", OfferPhase.EXPIRED
        )
        if now - self.last_overcommit_check >= OVERCOMMIT_INTERVAL:
            self.last_overcommit_check = now
            self.rescind_overcommitted(nodes)
        # Closed offers stay visible for offerRetention, then go.
        with self.cache.lock:
            old = [
                o
                for o in self.cache.offers.values()
                if offer_phase(o) != OfferPhase.OUTSTANDING.value
                and closed_at(o, now) + self.settings.offerRetention <= now
            ]
        for o in old:
            try:
                self.writer.delete("offers", o["metadata"]["namespace"], o["metadata"]["name"])
            except ApiError as e:
                if e.status != 404:  # tried again next step: the offer is still in the cache
                    log.warning("deleting closed offer %s: %s", key_of(o), e)
                    continue
            with self.cache.lock:
                self.cache.pop("offers", key_of(o))

    def rescind_overcommitted(self, nodes: dict) -> None:
        """Offers whose agent was taken by others (pods the master did not launch) are rescinded."""
        by_agent: dict[str, list[dict]] = defaultdict(list)
        with self.cache.lock:
            for o in self.cache.offers.values():
                if offer_phase(o) == OfferPhase.OUTSTANDING.value and not o["spec"].get("answer"):
                    by_agent[o["spec"]["agent"]].append(o)
            pending = self._pending_by_agent() if by_agent else {}
            usage = {
                a: self.cache.node_usage.get(a, Resources()) + pending.get(a, Resources()) for a in by_agent
            }
        victims: set[str] = set()
        for agent, offers in by_agent.items():
            node = nodes.get(agent)
            if node is None:
                continue
            free = node.allocatable - usage[agent]
            offered = Resources.total(resources_of(o) for o in offers)
            for o in sorted(offers, key=lambda o: o["metadata"].get("creationTimestamp") or "", reverse=True):
                if all(getattr(free, n) + 1e-9 >= getattr(offered, n) for n in SCALARS):
                    break
                victims.add(key_of(o))
                offered = offered - resources_of(o)
        if victims:
            self.rescind_offers(
                lambda o: key_of(o) in victims,
                "REASON_RESOURCES_TAKEN",
                "another pod took this agent's resources",
            )

    def _pending_by_agent(self) -> dict[str, Resources]:
        """Per agent, non-terminal tasks whose pod the cache has not seen yet (must hold the lock);
        one whose pod ended holds nothing, as in the allocation's holdings, and so does one inside
        its outstanding Offer (a framework's own Task waiting for the accept naming it: the Offer
        holds for both, and counting it too would rescind the Offer it is to be launched from)."""
        pending: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        inside = self.cache.holdings.inside
        for k, t in self.cache.tasks.items():
            if k in inside:
                continue
            if k not in self.cache.pods and not is_terminal(t) and not self.cache.pod_ended(k):
                add_into(pending[t["spec"]["agent"]], resources_of(t))
        return {agent: Resources(*v) for agent, v in pending.items()}
