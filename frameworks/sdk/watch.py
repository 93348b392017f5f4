"""List then watch one kind of object, re-listing when the API server answers 410 Gone.

Each (re)list hands the full list to `emit("SYNC", items)` so the consumer can diff it against
what it knew; then every watch event goes to `emit(type, object)` in order. The loop resumes a
timed-out watch from the last resourceVersion seen (bookmarks included) without listing again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

Emit = Callable[[str, Any], None]


class ListWatch(threading.Thread):
    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        args: tuple,
        emit: Emit,
        stopped: threading.Event,
        timeout_seconds: int = 60,
        **selectors: str,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._list_fn = list_fn
        self._args = args
        self._emit = emit
        self._stopped = stopped
        self._timeout = timeout_seconds
        self._selectors = {k: v for k, v in selectors.items() if v}
        self._watch: watch.Watch | None = None
        self.lists = 0  # how many times it listed (1 + re-lists), for tests and diagnostics

    def stop(self) -> None:
        w = self._watch
        if w is not None:
            w.stop()  # shuts the socket down so a blocked read returns

    def run(self) -> None:
        backoff = 0.2
        while not self._stopped.is_set():
            try:
                rv = self._list()
                backoff = 0.2
                self._watch_from(rv)
            except Exception as e:  # the API server restarting must not end the driver
                if self._stopped.is_set():
                    return
                log.warning("%s: list/watch failed (%s); retrying in %.1fs", self.name, _short(e), backoff)
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _list(self) -> str:
        res = self._list_fn(*self._args, **self._selectors)
        if not isinstance(res, dict):  # typed core API objects
            res = res.to_dict()
        self.lists += 1
        items = res.get("items") or []
        self._emit("SYNC", items)
        return res["metadata"]["resourceVersion"]

    def _watch_from(self, rv: str) -> None:
        """Watch until stopped; return to re-list on 410 Gone."""
        while not self._stopped.is_set():
            w = watch.Watch()
            self._watch = w
            try:
                for event in w.stream(
                    self._list_fn,
                    *self._args,
                    resource_version=rv,
                    timeout_seconds=self._timeout,
                    allow_watch_bookmarks=True,
                    **self._selectors,
                ):
                    if self._stopped.is_set():
                        return
                    kind = event["type"]
                    obj = event["raw_object"]
                    new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_rv:
                        rv = new_rv
                    if kind == "BOOKMARK":
                        continue
                    self._emit(kind, obj)
            except ApiException as e:
                if e.status == 410:
                    log.debug("%s: resourceVersion %s expired, re-listing", self.name, rv)
                    return
                raise
            except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError, OSError):
                if self._stopped.is_set():
                    return
                raise
            finally:
                self._watch = None


def _short(e: Exception) -> str:
    if isinstance(e, ApiException):
        return f"HTTP {e.status} {e.reason}"
    return f"{type(e).__name__}: {e}"
