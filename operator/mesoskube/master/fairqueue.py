"""Offer creates taken round-robin by framework, by a few worker threads.

An Offer create waits for the status client's token (QPS 50 by default). A framework offered up
to the cap (256 at 1,000 agents) queues five seconds of creates; in one FIFO pool a framework that
subscribed a moment later waited behind all of them for its first offer. Here each framework has
its own line and the workers take one create from each in turn, so a newcomer's first offer
waits for at most one create per framework already waiting.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger("mesoskube.master")


class FairQueue:
    def __init__(self, workers: int, thread_name_prefix: str = "mesoskube-fair") -> None:
        """`workers` threads run the work; 0: none, the caller takes it (unit tests)."""
        self._cond = threading.Condition()
        self._lines: dict[Hashable, deque[tuple[Callable[..., Any], tuple]]] = {}
        self._turns: deque[Hashable] = deque()  # groups with work, in the order they are served
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{thread_name_prefix}-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def submit_for(self, group: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the queue is shut down")
            line = self._lines.get(group)
            if line is None:
                line = self._lines[group] = deque()
                self._turns.append(group)
            line.append((fn, args))
            self._cond.notify()

    def take(self) -> tuple[Callable[..., Any], tuple] | None:
        """The next piece of work, round-robin over the groups; None once shut down and empty."""
        with self._cond:
            while not self._turns and not self._closed:
                self._cond.wait()
            if not self._turns:
                return None
            group = self._turns.popleft()
            line = self._lines[group]
            item = line.popleft()
            if line:
                self._turns.append(group)
            else:
                del self._lines[group]
            return item

    def pending(self) -> int:
        with self._cond:
            return sum(len(line) for line in self._lines.values())

    def _work(self) -> None:
        while (item := self.take()) is not None:
            fn, args = item
            try:
                fn(*args)
            except Exception:  # the work reports its own failures; this keeps the worker alive
                log.exception("offer create failed")

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """As Executor.shutdown: with cancel_futures, work not started is dropped."""
        with self._cond:
            self._closed = True
            if cancel_futures:
                self._lines.clear()
                self._turns.clear()
            self._cond.notify_all()
        if wait:
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join()
