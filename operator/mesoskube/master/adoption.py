"""Tasks that adopt an existing pod (spec.pod) instead of creating one: the pods framework's
tasks. At accept the pods are checked with the rest of the accept (all or none); at launch the
master binds the pod to the agent (a Binding, as kube-scheduler does) where it would create one.
From then on the pod is mirrored into its Task like any other.

A part with declared dependencies (the writer, the cache, the settings, and the task part's
`launched` memo and state writer), kept apart from tasksync.py: sync_task calls `adopt` once,
before it mirrors the pod; the accept calls `check_adoptions`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from mesoskube.api.models import TaskInfo, TaskState
from mesoskube.master.builders import binding_manifest
from mesoskube.master.cache import Cache
from mesoskube.master.taskstate import TaskUpdate
from mesoskube.master.validation import AcceptVerdict, check_adopted_pods
from mesoskube.master.writer import ApiError, Writer
from mesoskube.settings import Settings

log = logging.getLogger("mesoskube.master")


@dataclass
class PodAdoption:
    writer: Writer
    cache: Cache
    settings: Settings
    launched: set[str]  # the task part's: tasks whose pod was created, bound or seen
    set_state: Callable[[str, dict, TaskUpdate, float], None]  # the task part's status write

    def check_adoptions(self, ns: str, tasks: list[TaskInfo]) -> AcceptVerdict:
        """The accept's adopting tasks against the pods as the master's cache holds them."""
        adopting = [t for t in tasks if t.pod is not None]
        if not adopting:
            return AcceptVerdict(True)
        with self.cache.lock:
            pods = {t.pod.name: self.cache.pod_bodies.get(f"{ns}/{t.pod.name}") for t in adopting}
        return check_adopted_pods(adopting, pods, self.settings.schedulerName)

    def adopt(self, key: str, task: dict, pod: dict | None, seen: bool, now: float) -> bool:
        """Bind an adopting task's pod while it is unbound. True: this step is done; False: mirror
        the pod as for any task (it is bound, being deleted, or gone)."""
        spec = task["spec"]
        if pod is not None and (pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp")):
            return False
        if pod is None and seen:
            return False  # deleted before it was bound: TASK_KILLED through the mirror
        if key in self.launched:
            return True  # bound a moment ago; the watch has not shown it yet
        # Before the binding the pod is still the user's: a kill or a lost agent ends the task
        # and leaves the pod Pending for its framework to place again.
        if spec.get("kill"):
            update = TaskUpdate(
                TaskState.KILLED, "REASON_TASK_KILLED_DURING_LAUNCH", "killed before its pod was bound"
            )
        elif spec["agent"] not in self.cache.nodes:
            update = TaskUpdate(
                TaskState.LOST,
                "REASON_AGENT_REMOVED",
                "the agent's node was removed before the pod was bound",
            )
        else:
            update = self._bind(key, spec)
        if update is not None:
            self.set_state(key, task, update, now)
        return True

    def _bind(self, key: str, spec: dict) -> TaskUpdate | None:
        ns, name = key.split("/", 1)
        try:
            self.writer.bind_pod(ns, binding_manifest(name, spec["pod"]["uid"], spec["agent"]))
        except ApiError as e:
            if e.status not in (404, 409, 422):
                raise  # retriable or unexpected: the task queue retries with backoff
            why = "not found" if e.status == 404 else "replaced or bound elsewhere"
            return TaskUpdate(
                TaskState.ERROR,
                "REASON_TASK_INVALID",
                f"cannot bind pod {name} to {spec['agent']}: {why} ({e.reason})",
            )
        # No status write: the first comes with the pod's first real state, as for created pods.
        self.launched.add(key)
        return None
