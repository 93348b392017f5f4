"""Kubernetes Events on Frameworks, Offers and Tasks: best effort, written off the engine's path."""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import Executor
from datetime import UTC, datetime

from mesoskube.master.writer import ApiError, Writer

log = logging.getLogger("mesoskube.master.events")
COMPONENT = "mesoskube-master"


class EventRecorder:
    def __init__(self, writer: Writer, pool: Executor | None, component: str = COMPONENT) -> None:
        # No pool: written inline (unit tests). `component` names the writer in the Event's source
        # (the pods framework records its own Events through this class).
        self.writer, self.pool, self.component = writer, pool, component

    def normal(self, obj: dict, reason: str, message: str) -> None:
        self._post(obj, "Normal", reason, message)

    def warning(self, obj: dict, reason: str, message: str) -> None:
        self._post(obj, "Warning", reason, message)

    def _post(self, obj: dict, type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"generateName": f"{meta['name'][:200]}.", "namespace": ns},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

        def post() -> None:
            try:
                self.writer.create_event(ns, body)
            except ApiError as e:
                log.debug("event %s on %s not recorded: %s", reason, meta["name"], e.reason)

        if self.pool is None:
            post()
            return
        with contextlib.suppress(RuntimeError):  # the pool is shut down while the master stops
            self.pool.submit(post)
