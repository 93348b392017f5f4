"""Framework and role status, metrics and completed-task retention, on their own thread.

A part with declared dependencies: it reads the cache, decides what to write, and hands the
writes to the Writer (through `run_all`, the engine's write pool).
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from mesoskube import metrics
from mesoskube.allocator import dominant_share
from mesoskube.api.models import DEFAULT_ROLE, OfferPhase, TaskState
from mesoskube.master.cache import Cache
from mesoskube.master.objects import framework_key, is_terminal, ns_name, offer_phase, resources_of
from mesoskube.master.writer import ApiError, Writer
from mesoskube.resources import SCALARS, Resources
from mesoskube.settings import Settings

log = logging.getLogger("mesoskube.master")

STATUS_INTERVAL = 2.0


@dataclass
class StatusPublisher:
    writer: Writer
    cache: Cache  # read, and refreshed with what the writes return
    settings: Settings
    agent_matches: Callable[[Mapping[str, str]], bool]
    run_all: Callable[[Callable, Iterable], list]
    _metric_frameworks: set[str] = field(default_factory=set)

    def publish_status(self, now: float) -> None:
        with self.cache.lock:
            frameworks = dict(self.cache.frameworks)
            tasks = list(self.cache.tasks.values())
            offers = list(self.cache.offers.values())
            roles = dict(self.cache.roles)
            nodes = [n for n in self.cache.nodes.values() if n.offerable and self.agent_matches(n.labels)]
        total = Resources.total(n.allocatable for n in nodes)
        per_fw: dict[str, Resources] = defaultdict(Resources)
        per_role: dict[str, Resources] = defaultdict(Resources)
        fw_roles: dict[str, set[str]] = defaultdict(set)
        counts: dict[str, dict[str, int]] = defaultdict(lambda: {"offers": 0, "tasks": 0})
        states: dict[str, int] = defaultdict(int)
        for t in tasks:
            states[(t.get("status") or {}).get("state") or TaskState.STAGING.value] += 1
            if is_terminal(t):
                continue
            k = framework_key(t["metadata"]["namespace"], t["spec"]["framework"])
            r = resources_of(t)
            per_fw[k] += r
            per_role[t["spec"].get("role") or DEFAULT_ROLE] += r
            counts[k]["tasks"] += 1
        for o in offers:
            # An answered offer is on its way out: what it launched is counted with the tasks.
            if offer_phase(o) != OfferPhase.OUTSTANDING.value or o["spec"].get("answer"):
                continue
            k = framework_key(o["metadata"]["namespace"], o["spec"]["framework"])
            r = resources_of(o)
            r = Resources(r.cpus, r.mem, r.disk, r.gpus)
            per_fw[k] += r
            per_role[o["spec"].get("role") or DEFAULT_ROLE] += r
            counts[k]["offers"] += 1
        for state in TaskState:
            metrics.tasks.labels(state=state.value).set(states.get(state.value, 0))
        writes = []
        for k, fw in frameworks.items():
            for role in (fw.get("spec") or {}).get("roles") or [DEFAULT_ROLE]:
                fw_roles[role].add(k)
            if (fw.get("status") or {}).get("phase") is None or fw["metadata"].get("deletionTimestamp"):
                continue
            r = per_fw.get(k, Resources())
            share = round(dominant_share(r, total), 4)
            metrics.framework_share.labels(framework=k).set(share)
            for res in SCALARS:
                metrics.framework_allocated.labels(framework=k, resource=res).set(getattr(r, res))
            want = {
                "offers": counts[k]["offers"],
                "tasks": counts[k]["tasks"],
                "allocated": {n: v for n, v in r.scalars().items()},
                "dominantShare": share,
            }
            have = {x: (fw.get("status") or {}).get(x) for x in want}
            if have != want:
                writes.append(("frameworks", k, want))
        for name, body in roles.items():
            r = per_role.get(name, Resources())
            weight = float((body.get("spec") or {}).get("weight") or 1.0)
            share = round(dominant_share(r, total) / weight, 4)
            metrics.role_share.labels(role=name).set(share)
            for res in SCALARS:
                metrics.role_allocated.labels(role=name, resource=res).set(getattr(r, res))
            want = {
                "allocated": r.scalars(),
                "dominantShare": share,
                "frameworks": len(fw_roles.get(name, ())),
            }
            have = {x: (body.get("status") or {}).get(x) for x in want}
            if have != want:
                writes.append(("roles", name, want))
        # Series of frameworks that went: without this the exporter keeps one per framework ever seen.
        live = {k for k in frameworks}
        for gone in self._metric_frameworks - live:
            with contextlib.suppress(KeyError):
                metrics.framework_share.remove(gone)
            for r in SCALARS:
                with contextlib.suppress(KeyError):
                    metrics.framework_allocated.remove(gone, r)
        self._metric_frameworks = live
        self.run_all(self._write_status, writes)
        self.prune_completed_tasks(tasks)

    def prune_completed_tasks(self, tasks: list[dict]) -> None:
        """Keep at most maxCompletedTasksPerFramework terminal Tasks per framework (Mesos keeps 1000)."""
        keep = self.settings.maxCompletedTasksPerFramework
        done: dict[str, list[dict]] = defaultdict(list)
        for t in tasks:
            if is_terminal(t):
                done[framework_key(t["metadata"]["namespace"], t["spec"]["framework"])].append(t)
        old = []
        for finished in done.values():
            if len(finished) > keep:
                finished.sort(key=lambda t: (t.get("status") or {}).get("finishedAt") or "")
                old.extend(finished[: len(finished) - keep])
        self.run_all(
            lambda t: self._delete_quietly("tasks", t["metadata"]["namespace"], t["metadata"]["name"]), old
        )

    def _write_status(self, item: tuple[str, str, dict]) -> None:
        store, key, status = item
        try:
            if store == "roles":
                body = self.writer.patch_role_status(key, {"status": status})
            else:
                ns, name = ns_name(key)
                body = self.writer.patch_status("frameworks", ns, name, {"status": status})
            self.cache.upsert(store, body)
        except ApiError as e:
            if e.status != 404:
                log.warning("status of %s %s not written: %s", store, key, e.reason)

    def _delete_quietly(self, plural: str, ns: str, name: str) -> None:
        try:
            self.writer.delete(plural, ns, name)
        except ApiError as e:
            if e.status != 404:
                raise
