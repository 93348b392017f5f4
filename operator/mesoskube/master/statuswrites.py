"""Task status writes off the engine's step: a launch phase no longer waits for the status patches
of tasks whose pods already run (issue 14: "launches prioritised over status patches").

The engine's step runs its phases one after another (answers -> tasks), each waiting for its
slowest write. With the status patches on their own client (writer.py) they still held the step:
at QPS 50, a step launching k tasks and reporting k pods Running took 2k/50 + k/50 seconds. Here a
status patch is handed to its own pool and the step moves on.

Per task at most one status write is in flight, so two states can never land out of order: a
state decided while the task's write is under way is not written then; the task goes back on its
work queue when the write ends, and its sync decides again from the written state. A write that
fails sends the task back with backoff (the work queue's), like any failed work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from mesoskube.master import trace
from mesoskube.master.cache import Cache
from mesoskube.master.workqueue import WorkQueue
from mesoskube.master.writer import ApiError, Writer

log = logging.getLogger("mesoskube.master")


@dataclass
class StatusWrites:
    writer: Writer
    cache: Cache
    queue: WorkQueue  # the task queue: a task comes back here after its write
    pool: Executor | None  # None: written inline (unit tests, deterministic)
    _in_flight: dict[str, str] = field(default_factory=dict)  # task key -> state being written
    _again: set[str] = field(default_factory=set)  # decided again while in flight
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def busy(self, key: str, state: str) -> bool:
        """Whether a write of the task's status is under way; if it writes another state than
        `state`, the task is synced again when it ends."""
        with self._lock:
            if key not in self._in_flight:
                return False
            if self._in_flight[key] != state:
                self._again.add(key)
            return True

    def write(self, key: str, state: str, patch: dict, after: Callable[[dict], None]) -> None:
        """Patch the task's status (`patch` is the status body), then `after(body)`; inline
        without a pool. Returns at once when the same state is being written already."""
        ns, name = key.split("/", 1)
        if self.pool is None:
            after(self._patch(ns, name, patch))
            return
        with self._lock:
            if key in self._in_flight:
                if self._in_flight[key] != state:
                    self._again.add(key)
                return
            self._in_flight[key] = state
        try:
            self.pool.submit(self._run, key, ns, name, patch, after)
        except RuntimeError:  # the pool is shut down: the master is stopping
            with self._lock:
                self._in_flight.pop(key, None)

    def _patch(self, ns: str, name: str, patch: dict) -> dict:
        body = self.writer.patch_status("tasks", ns, name, {"status": patch})
        trace.mark(f"status-{patch.get('state')}", f"{ns}/{name}")
        self.cache.upsert("tasks", body)
        return body

    def _run(self, key: str, ns: str, name: str, patch: dict, after: Callable[[dict], None]) -> None:
        error: BaseException | None = None
        try:
            after(self._patch(ns, name, patch))
        except ApiError as e:
            if e.status != 404:  # 404: the Task went; its DELETED event ends it
                error = e
                log.warning("%s: status %s not written: %s %s", key, patch.get("state"), e.status, e.reason)
        except Exception as e:
            error = e
            log.exception("%s: status write failed", key)
        finally:
            with self._lock:
                self._in_flight.pop(key, None)
                again = key in self._again
                self._again.discard(key)
        if error is not None:
            self.queue.add_after(key, self.queue.backoff(self.queue.failures(key)))
        elif again:
            self.queue.add(key)
