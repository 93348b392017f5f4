"""Ghosts after a re-list: objects deleted while a watch was away.

For the custom resources, which kopf watches (nodes and pods come through reflector.py, which knows
where its listings end and calls `settle` after each). kopf resumes a broken watch from its last
resourceVersion, but after a 410 Gone (a compacted version, or a kube-apiserver restarted with a
fresh watch cache) it LISTs the kind again and replays what exists as events of type None; what was
deleted meanwhile is never reported, and kopf's handlers never see where a listing ends. client-go's
informer replaces its store with the listing (Replace); this is our equivalent. The handlers take a
listing event for an object kopf has already shown them as a re-list of that kind (the first listing
shows only objects they have not seen); once those events have been quiet for RELIST_QUIET, one
metadata-only LIST of the kind is compared with the cache, and what the cache holds that the LIST
lacks, untouched by any event newer than the LIST, is delivered to the handlers as DELETED
(Cache.ghosts).

The same sweep runs once per kind after the seed LIST, when kopf's first listing has gone quiet:
the seed and that listing are two snapshots, and an object deleted between them would stay.

Not covered: a re-list that shows no object kopf had shown before (every object of the kind
deleted during the gap) gives no sign; those ghosts stay until the next re-list that does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

from mesoskube import metrics
from mesoskube.master.cache import Cache
from mesoskube.master.writer import Writer

log = logging.getLogger("mesoskube.master")
# A re-list replays every object of its kind; the sweep waits until it has been quiet this long, so
# it runs once per re-list, after it (its LIST is newer than anything the replay carries).
RELIST_QUIET = 1.0


@dataclass
class GhostSweep:
    writer: Writer
    cache: Cache
    clock: Callable[[], float]
    namespace: str | None
    pool: Executor | None = None  # the LIST off the engine's loop; None: inline (unit tests)
    # A DELETED event into the handlers (handlers.py sets it): the master reacts as to a real one.
    deliver: Callable[[str, dict], None] = lambda kind, body: None
    relisting: dict[str, float] = field(default_factory=dict)  # kind -> its last listing event
    running: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def relisted(self, kind: str) -> None:
        with self._lock:
            self.relisting[kind] = self.clock()

    def after_seed(self, kinds: Iterable[str]) -> None:
        """The seed LIST and kopf's first listing are two snapshots: an object deleted between them,
        or whose DELETED came before the seed's older copy, would stay forever. One sweep of each
        kind once kopf's first listing of it has gone quiet (`listing`) settles it."""
        with self._lock:
            for kind in kinds:
                self.relisting[kind] = self.clock()

    def listing(self, kind: str) -> None:
        """An event of kopf's first listing of `kind`: a sweep pending for it waits until it ends."""
        with self._lock:
            if kind in self.relisting:
                self.relisting[kind] = self.clock()

    def next_due_in(self, now: float) -> float | None:
        with self._lock:
            pending = [at + RELIST_QUIET - now for k, at in self.relisting.items() if k not in self.running]
        return max(0.0, min(pending)) if pending else None

    def sweep_due(self, now: float) -> None:
        """Start the sweep of every kind whose re-list has gone quiet (at most one per kind at once)."""
        with self._lock:
            due = [
                k for k, at in self.relisting.items() if now - at >= RELIST_QUIET and k not in self.running
            ]
            for kind in due:
                del self.relisting[kind]
                self.running.add(kind)
        for kind in due:
            if self.pool is None:
                self.sweep(kind)
            else:
                try:
                    self.pool.submit(self.sweep, kind)
                except RuntimeError:  # the pool is shut down: the master is stopping
                    with self._lock:
                        self.running.discard(kind)

    def sweep(self, kind: str) -> None:
        try:
            self._sweep(kind)
        except Exception:  # tried again once its quiet period has passed again, never silently
            log.warning("the sweep of %s after its re-list failed; retrying", kind, exc_info=True)
            with self._lock:
                self.relisting.setdefault(kind, self.clock())
        finally:
            with self._lock:
                self.running.discard(kind)

    def _sweep(self, kind: str) -> None:
        list_rv, listed = self.writer.list_versions(kind, self.namespace)
        self.settle(kind, list_rv, listed)

    def settle(self, kind: str, list_rv: str, listed: Mapping[str, str]) -> int:
        """Deliver as DELETED what the cache holds of `kind` that a LIST at `list_rv` (`listed`:
        {key: resourceVersion}) lacks and no newer event touched; how many. The sweep's own LIST,
        or a reflector's listing (reflector.py) for the kinds it watches."""
        found = self.cache.ghosts(kind, list_rv, listed)
        gone = []
        for body in found:
            key = _name(body)
            # Re-checked and delivered under the cache's lock: the watch may have shown a newer
            # object of that name meanwhile, which must not be deleted; events no newer than the
            # LIST are older than the deletion afterwards (a tombstone).
            with self.cache.lock:
                if not self.cache.still_ghost(kind, key, list_rv):
                    continue
                self.deliver(kind, body)
                self.cache.bury_ghost(kind, key, list_rv)
            gone.append(key)
            metrics.relist_ghosts.labels(kind=kind).inc()
        names = ", ".join(gone[:10]) + (" ..." if len(gone) > 10 else "")
        # Deletions the watch missed are worth an operator's eye; a sweep that found none is not.
        log.log(
            logging.WARNING if gone else logging.INFO,
            "%s re-listed by the watch: %d deleted meanwhile%s",
            kind,
            len(gone),
            f" ({names})" if gone else "",
        )
        return len(gone)


def _name(body: dict) -> str:
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
