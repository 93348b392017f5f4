"""Kubernetes Events on Frameworks, Offers and Tasks: best effort, written off the engine's path."""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import Executor
from datetime import UTC, datetime

from kubernetes.client.exceptions import ApiException

from mesoskube.kube import Kube

log = logging.getLogger("mesoskube.master.events")
COMPONENT = "mesoskube-master"


class EventRecorder:
    def __init__(self, kube: Kube, pool: Executor, component: str = COMPONENT) -> None:
        self.kube, self.pool, self.component = kube, pool, component

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
                self.kube.core.create_namespaced_event(ns, body)
            except ApiException as e:
                log.debug("event %s on %s not recorded: %s", reason, meta["name"], e.reason)

        with contextlib.suppress(RuntimeError):  # the pool is shut down while the master stops
            self.pool.submit(post)
