"""Task state from its pod (TASK_STAGING .. TASK_LOST), pod creation for launched tasks, kills.

A mixin of the master's Engine (engine.py), which holds the state these methods share.
"""

from __future__ import annotations

import logging

from kubernetes.client.exceptions import ApiException

from mesoskube import metrics
from mesoskube.api.models import TERMINAL_TASK_STATES, TaskState
from mesoskube.master.builders import pod_manifest
from mesoskube.master.cache import format_time
from mesoskube.master.contract import ignore_foreign_task
from mesoskube.master.objects import ns_name, task_state
from mesoskube.master.taskstate import TaskUpdate, for_missing_pod, from_pod

log = logging.getLogger("mesoskube.master")


class TaskSync:
    def sync_tasks(self, now: float) -> None:
        with self.dirty_lock:
            keys, self.dirty_tasks = self.dirty_tasks, set()
        with self.cache.lock:
            work = [(k, t) for k in keys if (t := self.cache.tasks.get(k)) is not None]
        self._run_all(lambda w: self._sync_task(*w, now), work)

    def _sync_task(self, key: str, task: dict, now: float) -> None:
        try:
            self.sync_task(key, task, now)
        except ApiException as e:
            if e.status == 404:
                return
            if e.status == 409:
                self.mark_task(key)
                return
            log.warning("task %s: %s", key, e.reason)
            self.mark_task(key)

    def sync_task(self, key: str, task: dict, now: float) -> None:
        ns, name = ns_name(key)
        task = self.cache.tasks.get(key) or task  # the newest we hold: work may wait in the pool
        spec, status = task["spec"], task.get("status") or {}
        state = task_state(task)
        if state not in TERMINAL_TASK_STATES and not self.provenance.trusted(task, key):
            ignore_foreign_task(self, task)
            return
        if state in TERMINAL_TASK_STATES:
            self.accepted_at.pop(key, None)
            self.launched.discard(key)
            with self.cache.lock:
                self.cache.pods_seen.discard(key)
            return
        # The pod as of now, not as of when this work was queued: it may have been shown since.
        pod, seen = self.cache.pod_of(key)
        agent_present = spec["agent"] in self.cache.nodes
        if pod is not None and not agent_present:
            self._delete_quietly_pod(ns, name)
            self._set_state(key, task, for_missing_pod(False, agent_present=False), now)
            return
        if pod is not None:
            self.launched.add(key)
        if pod is not None and pod.get("metadata", {}).get("deletionTimestamp") is None:
            if spec.get("kill") and key not in self.killing:
                self.killing.add(key)
                self._delete_quietly_pod(ns, name)
                return
            update = from_pod(pod)
            if update.state in TERMINAL_TASK_STATES and spec.get("kill"):
                update = TaskUpdate(TaskState.KILLED, "REASON_TASK_KILLED", "killed on request (spec.kill)")
            self._set_state(key, task, update, now)
            return
        if pod is not None:  # being deleted
            if pod["status"].get("phase") in ("Succeeded", "Failed"):
                self._set_state(key, task, from_pod(pod), now)
            return
        if status.get("podName") or seen:
            self._set_state(key, task, for_missing_pod(bool(spec.get("kill")), agent_present), now)
            return
        if key in self.launched:
            return  # created a moment ago; the watch will show the pod
        if spec.get("kill"):
            self._set_state(
                key,
                task,
                TaskUpdate(
                    TaskState.KILLED, "REASON_TASK_KILLED_DURING_LAUNCH", "killed before its pod was created"
                ),
                now,
            )
            return
        if not agent_present:
            self._set_state(
                key,
                task,
                TaskUpdate(
                    TaskState.LOST, "REASON_AGENT_REMOVED", "the agent's node was removed before launch"
                ),
                now,
            )
            return
        try:
            self.kube.core.create_namespaced_pod(ns, pod_manifest(task))
        except ApiException as e:
            if e.status != 409:
                self._set_state(
                    key,
                    task,
                    TaskUpdate(
                        TaskState.ERROR, "REASON_POD_REJECTED", f"the API server refused the pod: {e.reason}"
                    ),
                    now,
                )
                return
        # No status write here: the first one comes with the pod's first real state (write budget).
        self.launched.add(key)

    def _set_state(
        self, key: str, task: dict, update: TaskUpdate, now: float, extra: dict | None = None
    ) -> None:
        status = task.get("status") or {}
        if status.get("state") == update.state.value and not extra:
            return
        if status.get("state") is None and update.reason == "REASON_POD_PENDING":
            return  # a task without a state is TASK_STAGING already; saying so costs a write per task
        ns, name = ns_name(key)
        if key in self.launched and not status.get("podName"):
            extra = {"podName": name, "launchedAt": format_time(now), **(extra or {})}
        patch = {
            "state": update.state.value,
            "reason": update.reason,
            "message": update.message,
            **(extra or {}),
        }
        if update.state == TaskState.RUNNING and not status.get("runningAt"):
            patch["runningAt"] = format_time(now)
            if (accepted := self.accepted_at.pop(key, None)) is not None:
                metrics.task_launch.observe(max(0.0, now - accepted))
        if update.state in TERMINAL_TASK_STATES:
            patch["finishedAt"] = format_time(now)
            self.killing.discard(key)
            self.request_allocation()
            if update.state not in (TaskState.FINISHED, TaskState.KILLED):
                self.events.warning(task, update.state.value, f"{update.reason}: {update.message}")
        body = self.kube.patch_status("tasks", ns, name, {"status": patch})
        self.cache.upsert("tasks", body)

    def _kill(self, task: dict) -> None:
        ns, name = task["metadata"]["namespace"], task["metadata"]["name"]
        try:
            self.kube.patch("tasks", ns, name, {"spec": {"kill": True}})
        except ApiException as e:
            if e.status != 404:
                raise
