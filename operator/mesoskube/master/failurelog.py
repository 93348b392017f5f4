"""One warning per run of failures, not one per attempt: during an API server outage the master
retries every step, and a warning each time (69 lines for the declined-offer sweep alone in one
`make chaos` outage) buries what else happened. The first failure of a kind is a WARNING, the next
ones DEBUG, and the first success after them says how many there were."""

from __future__ import annotations

import logging
import threading
from collections import Counter


class FailureLog:
    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._failing: Counter[str] = Counter()
        self._lock = threading.Lock()

    def failed(self, kind: str, msg: str, *args: object) -> None:
        with self._lock:
            self._failing[kind] += 1
            first = self._failing[kind] == 1
        self.log.log(logging.WARNING if first else logging.DEBUG, msg, *args)

    def succeeded(self, kind: str) -> None:
        with self._lock:
            failures = self._failing.pop(kind, 0)
        if failures > 1:
            self.log.warning("%s work again after %d failures", kind, failures)
