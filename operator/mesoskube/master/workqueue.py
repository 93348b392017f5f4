"""A work queue with client-go's contract (k8s.io/client-go/util/workqueue), for keys of work.

- `add(key)` deduplicates: a key waiting once is processed once, however often it was added.
- One worker per key at a time: a key handed out by `get` is not handed out again until `done`;
  adds meanwhile mark it dirty, and `done` puts it back.
- `done(key, error)`: with an error (ANY exception) the key comes back after a per-key exponential
  backoff (base * 2^failures, capped); without one the key's failures are forgotten.
- No key is ever lost: nothing but `done(key)` without an error and no new add clears a key.

Thread-safe; time comes from an injected clock, so tests drive backoff without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Hashable, Iterator

BASE_DELAY = 0.05
MAX_DELAY = 30.0


class WorkQueue:
    def __init__(
        self,
        clock: Callable[[], float],
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.clock = clock
        self.base_delay, self.max_delay = base_delay, max_delay
        self.on_ready = on_ready  # wakes the engine loop
        self._lock = threading.Lock()
        self._queue: dict[Hashable, None] = {}  # ready keys, in order of arrival
        self._processing: set[Hashable] = set()
        self._dirty: set[Hashable] = set()  # added while processing: back on the queue at done()
        self._waiting: list[tuple[float, int, Hashable]] = []  # (ready at, seq, key): backoff heap
        self._waiting_at: dict[Hashable, float] = {}
        self._failures: dict[Hashable, int] = {}
        self._seq = itertools.count()

    def add(self, key: Hashable) -> None:
        with self._lock:
            self._add_locked(key)
        if self.on_ready:
            self.on_ready()

    def _add_locked(self, key: Hashable) -> None:
        self._waiting_at.pop(key, None)  # a fresh add overtakes a pending backoff
        if key in self._processing:
            self._dirty.add(key)
        else:
            self._queue[key] = None

    def add_after(self, key: Hashable, delay: float) -> None:
        with self._lock:
            self._add_after_locked(key, delay)

    def _add_after_locked(self, key: Hashable, delay: float) -> None:
        if key in self._queue:
            return
        at = self.clock() + delay
        if key in self._waiting_at and self._waiting_at[key] <= at:
            return
        self._waiting_at[key] = at
        heapq.heappush(self._waiting, (at, next(self._seq), key))

    def _promote_locked(self) -> None:
        now = self.clock()
        while self._waiting and self._waiting[0][0] <= now:
            at, _, key = heapq.heappop(self._waiting)
            if self._waiting_at.get(key) == at:
                del self._waiting_at[key]
                self._add_locked(key)

    def get(self) -> Hashable | None:
        """The next ready key, now handed to the caller; None when no key is ready."""
        with self._lock:
            self._promote_locked()
            for key in self._queue:
                del self._queue[key]
                self._processing.add(key)
                return key
            return None

    def drain(self) -> Iterator[Hashable]:
        """Every key ready now (each must still get its `done`)."""
        while (key := self.get()) is not None:
            yield key

    def done(self, key: Hashable, error: BaseException | None = None) -> None:
        with self._lock:
            self._processing.discard(key)
            if error is None:
                self._failures.pop(key, None)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self._queue[key] = None
                return
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            self._dirty.discard(key)  # the retry covers whatever the add wanted
            self._add_after_locked(key, self.backoff(failures))

    def retry(self, key: Hashable) -> None:
        """A failure of work on `key` done outside the queue (the key was not taken with `get`): back
        after its backoff, counted as a failure; a worker holding the key keeps its hold."""
        with self._lock:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            self._add_after_locked(key, self.backoff(failures))
        if self.on_ready:
            self.on_ready()

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def backoff(self, failures: int) -> float:
        return min(self.max_delay, self.base_delay * (2**failures))

    def failures(self, key: Hashable) -> int:
        with self._lock:
            return self._failures.get(key, 0)

    def next_ready_in(self) -> float | None:
        """Seconds until a key is ready: 0 if one is, None if none is waiting."""
        with self._lock:
            if self._queue:
                return 0.0
            live = [at for at, _, k in self._waiting if self._waiting_at.get(k) == at]
            return max(0.0, min(live) - self.clock()) if live else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue) + len(self._waiting_at) + len(self._dirty)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._queue or key in self._waiting_at or key in self._dirty
