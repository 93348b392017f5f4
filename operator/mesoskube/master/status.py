"""Framework and role status, metrics and completed-task retention, on their own thread.

A part with declared dependencies: it reads the cache, decides what to write, and hands the
writes to the Writer (through `run_all`, the engine's write pool).
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mesoskube import metrics
from mesoskube.allocator import dominant_share
from mesoskube.api.models import DEFAULT_ROLE, TaskState
from mesoskube.master.cache import Cache
from mesoskube.master.objects import ns_name
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
    # The offerable agents' totals as the allocator's last snapshot saw them (call with the cache's
    # lock held): shares here are the allocator's shares.
    cluster_total: Callable[[], Resources]
    run_all: Callable[[Callable, Iterable], list]
    _metric_frameworks: set[str] = field(default_factory=set)

    def publish_status(self, now: float) -> None:
        """From the cache's running totals (holdings.py, tally.py), never a walk of every task or
        offer: that cost 2.4 s of CPU every STATUS_INTERVAL at 200,000 tasks. A framework's
        allocation and outstanding offers are the allocator's own figures: an answered offer counts
        until the master has worked its answer, as its tasks do after."""
        keep = self.settings.maxCompletedTasksPerFramework
        with self.cache.lock:
            frameworks = dict(self.cache.frameworks)
            roles = dict(self.cache.roles)
            total = self.cluster_total()
            holdings, tally = self.cache.holdings, self.cache.tally
            allocated = {k: holdings.allocated(k) for k in frameworks}
            outstanding = {k: holdings.outstanding(k) for k in frameworks}
            per_role = holdings.by_role()
            live_tasks = dict(tally.live)
            states = dict(tally.states)
            # Retention: only frameworks past the limit have their finished Tasks read.
            over = [
                [self.cache.tasks[k] for k in keys if k in self.cache.tasks]
                for keys in tally.finished.values()
                if len(keys) > keep
            ]
        per_fw = {k: Resources.total(by_role.values()) for k, by_role in allocated.items()}
        fw_roles: dict[str, set[str]] = defaultdict(set)
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
                "offers": outstanding[k],
                "tasks": live_tasks.get(k, 0),
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
        self.prune_completed_tasks(over)

    def prune_completed_tasks(self, over: list[list[dict]]) -> None:
        """Keep at most maxCompletedTasksPerFramework terminal Tasks per framework (Mesos keeps 1000);
        `over`: the finished Tasks of each framework past that."""
        keep = self.settings.maxCompletedTasksPerFramework
        old = []
        for finished in over:
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
