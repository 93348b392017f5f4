"""Task state from its pod (TASK_STAGING .. TASK_LOST), pod creation for launched tasks, kills,
and agent health: tasks on a node NotReady past agentUnreachableTimeout become TASK_UNREACHABLE
(PARTITION_AWARE frameworks) or TASK_LOST (the others, whose pods are deleted); when the node
comes back, an unreachable task whose pod still runs is RUNNING again.

A part with declared dependencies (writer, cache, settings, agent health, its work queue); the
memos of launched tasks are its own and forgotten when a Task goes. It builds the adoption part
(adoption.py), which shares its `launched` memo and its status write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from mesoskube import metrics
from mesoskube.api.models import TERMINAL_TASK_STATES, FrameworkPhase, TaskState
from mesoskube.master import LABEL_REFUSED, trace
from mesoskube.master.adoption import PodAdoption
from mesoskube.master.builders import pod_manifest
from mesoskube.master.cache import Cache, format_time
from mesoskube.master.contract import Provenance, ignore_foreign_task, made_by_master, unlaunched
from mesoskube.master.events import EventRecorder
from mesoskube.master.health import AgentHealth
from mesoskube.master.objects import framework_key, is_terminal, ns_name, task_state
from mesoskube.master.statuswrites import StatusWrites
from mesoskube.master.taskstate import TaskUpdate, for_missing_pod, from_pod
from mesoskube.master.workqueue import WorkQueue
from mesoskube.master.writer import ApiError, Writer, delete_pod_quietly
from mesoskube.settings import Settings

log = logging.getLogger("mesoskube.master")


@dataclass
class TaskSync:
    writer: Writer
    cache: Cache
    settings: Settings
    events: EventRecorder
    health: AgentHealth
    queue: WorkQueue
    process_queue: Callable[[WorkQueue, Callable], None]
    request_allocation: Callable[[Iterable[str] | None], None]
    provenance: Provenance  # what this master made: only those Tasks get pods (contract.py)
    accepted_at: dict[str, float] = field(default_factory=dict)
    killing: set[str] = field(default_factory=set)
    launched: set[str] = field(default_factory=set)  # tasks whose pod was created, bound or seen
    # Tasks an accept in flight creates, from before their Task create until their pod create ended
    # (answers.py): the accept launches them itself. Their own work meanwhile is skipped and comes
    # back when the launch ends (`skipped`): a pod can turn Running before its create's answer is
    # back, and that event must not be lost.
    launching: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)
    _launch_lock: threading.Lock = field(default_factory=threading.Lock)
    # Status patches run here, off the engine's step (statuswrites.py); None writes inline.
    status_pool: Executor | None = None

    def __post_init__(self) -> None:
        self.status_writes = StatusWrites(self.writer, self.cache, self.queue, self.status_pool)
        # Tasks adopting an existing pod: bound where others get a pod created (adoption.py).
        self.adoption = PodAdoption(self.writer, self.cache, self.settings, self.launched, self._set_state)

    def begin_launch(self, keys: Iterable[str]) -> None:
        with self._launch_lock:
            self.launching.update(keys)

    def end_launch(self, keys: Iterable[str]) -> None:
        """The accept is done with these tasks: whatever was skipped for them meanwhile runs now."""
        with self._launch_lock:
            self.launching.difference_update(keys)
            again = self.skipped.intersection(keys)
            self.skipped.difference_update(again)
        for key in again:
            self.queue.add(key)

    def _launched_by_accept(self, key: str) -> bool:
        with self._launch_lock:
            if key in self.launching:
                self.skipped.add(key)
                return True
            return False

    def forget(self, key: str) -> None:
        """The Task went: drop what was remembered of it (else the memos grow forever)."""
        self.accepted_at.pop(key, None)
        self.launched.discard(key)
        self.killing.discard(key)
        with self.cache.lock:
            self.cache.pods_seen.discard(key)

    def sync_tasks(self, now: float) -> None:
        def work(key: str) -> None:
            with self.cache.lock:
                task = self.cache.tasks.get(key)
                if task is None or key in self.cache.assumed["tasks"]:
                    return  # gone, or its accept has not created it yet (its create's answer adds it)
            if self._launched_by_accept(key):
                # Its accept creates its pod next (answers.py): a pod create from here too would only
                # earn a 409. This work comes back when the launch ends.
                return
            try:
                self.sync_task(key, task, now)
            except ApiError as e:
                if e.status != 404:  # 404: the Task went; its DELETED event ends it
                    raise

        self.process_queue(self.queue, work)

    def check_agents(self, now: float) -> None:
        """Mesos's agent health by the master's own clock: NotReady past the timeout makes the
        node's tasks unreachable; Ready again reconciles them."""
        with self.cache.lock:
            nodes = list(self.cache.nodes.values())
        agents = self.health.observe(nodes, now)
        if agents:
            with self.cache.lock:
                keys = [
                    k
                    for k, t in self.cache.tasks.items()
                    if t["spec"]["agent"] in agents and not is_terminal(t)
                ]
            for k in keys:
                self.queue.add(k)

    def _partition_aware(self, task: dict) -> bool:
        fw = self.cache.frameworks.get(
            framework_key(task["metadata"]["namespace"], task["spec"]["framework"])
        )
        return "PARTITION_AWARE" in ((fw or {}).get("spec") or {}).get("capabilities", [])

    def _framework_task_launched(self, key: str, task: dict, now: float) -> bool:
        """A Task this master neither made nor launched: a framework's own, made for an accept by
        name (answers.py). It is acted on once a pod of its own exists (a launch worked before a
        restart); while its Offer may still be accepted naming it, it waits; else it is refused
        and gets no pod. A Task claiming the master's label that this master cannot vouch for, or
        naming no Offer, is refused as not from the master."""
        if made_by_master(task) or not task["spec"].get("offer"):
            ignore_foreign_task(self.writer, self.cache, self.events, lambda: now, task)
            return False
        pod, _ = self.cache.pod_of(key)
        owners = {o.get("uid") for o in ((pod or {}).get("metadata") or {}).get("ownerReferences") or []}
        if pod is not None and task["metadata"].get("uid") in owners:
            self.provenance.made(task)
            return True
        ns = task["metadata"]["namespace"]
        with self.cache.lock:
            offer = self.cache.offers.get(f"{ns}/{task['spec']['offer']}")
        verdict = unlaunched(task, offer, self._partition_aware(task))
        if verdict is not None:
            self._set_state(key, task, TaskUpdate(*verdict), now)
        return False

    def sync_task(self, key: str, task: dict, now: float) -> None:
        ns, name = ns_name(key)
        task = self.cache.tasks.get(key) or task  # the newest we hold
        spec, status = task["spec"], task.get("status") or {}
        state = task_state(task)
        trusted = state in TERMINAL_TASK_STATES or self.provenance.trusted(
            task, key, by_creation=made_by_master(task)
        )
        if not trusted and not self._framework_task_launched(key, task, now):
            return
        if LABEL_REFUSED in (task["metadata"].get("labels") or {}) and state not in TERMINAL_TASK_STATES:
            return  # a refused launch being reported: its TASK_ERROR is on the way, never a pod
        if state in TERMINAL_TASK_STATES and self._correct_forged_terminal(key, task, now):
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
        if spec.get("pod") and self.adoption.adopt(key, task, pod, seen, now):
            return
        if pod is not None and not agent_present:
            delete_pod_quietly(self.writer, ns, name)
            self._set_state(key, task, for_missing_pod(False, agent_present=False), now)
            return
        if pod is not None:
            self.launched.add(key)
        if self.health.is_unreachable(spec["agent"]):
            if self._partition_aware(task):
                update = TaskUpdate(
                    TaskState.UNREACHABLE,
                    "REASON_AGENT_UNREACHABLE",
                    f"the agent's node has been NotReady for {self.settings.agentUnreachableTimeout:.0f}s "
                    "or more",
                )
                self._set_state(key, task, update, now)
                return
            if pod is not None:
                delete_pod_quietly(self.writer, ns, name)
            update = TaskUpdate(
                TaskState.LOST,
                "REASON_AGENT_UNREACHABLE",
                f"the agent's node was NotReady for {self.settings.agentUnreachableTimeout:.0f}s; "
                "the task is gone (the framework is not PARTITION_AWARE)",
            )
            self._set_state(key, task, update, now)
            return
        kill = self.kill_wanted(task)
        if pod is not None and pod.get("metadata", {}).get("deletionTimestamp") is None:
            if kill and key not in self.killing:
                self.killing.add(key)
                delete_pod_quietly(self.writer, ns, name)
                return
            update = from_pod(pod)
            if update.state in TERMINAL_TASK_STATES and kill:
                update = TaskUpdate(TaskState.KILLED, "REASON_TASK_KILLED", self._killed_because(task))
            self._set_state(key, task, update, now)
            return
        if pod is not None:  # being deleted
            if pod["status"].get("phase") in ("Succeeded", "Failed"):
                self._set_state(key, task, from_pod(pod), now)
            return
        if status.get("podName") or seen:
            update = for_missing_pod(kill, agent_present)
            if kill:
                update = TaskUpdate(update.state, update.reason, self._killed_because(task))
            self._set_state(key, task, update, now)
            return
        if key in self.launched:
            return  # created a moment ago; the watch will show the pod
        if kill:
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
            trace.mark("pod-sent", key)
            self.writer.create_pod(ns, pod_manifest(task))
            trace.mark("pod-created", key)
        except ApiError as e:
            if e.retriable:
                raise  # 429, 5xx, a reset connection: the task queue retries with backoff
            if e.status != 409:
                self._set_state(
                    key,
                    task,
                    TaskUpdate(
                        TaskState.ERROR,
                        "REASON_POD_REJECTED",
                        f"the API server refused the pod: {e.reason}: {e.message}"
                        if e.message
                        else f"the API server refused the pod: {e.reason}",
                    ),
                    now,
                )
                return
        # No status write here: the first one comes with the pod's first real state (write budget).
        self.launched.add(key)

    def _correct_forged_terminal(self, key: str, task: dict, now: float) -> bool:
        """A terminal state while the Task's own pod still runs was not written by the master (it
        writes one only once the pod ended, is being deleted or is gone): a forged status, which
        would free the task's resources while the pod holds them. Corrected from the pod."""
        pod, _ = self.cache.pod_of(key)
        if pod is None or pod["metadata"].get("deletionTimestamp") is not None:
            return False
        owners = {r.get("uid") for r in pod["metadata"].get("ownerReferences") or []}
        if task["metadata"].get("uid") not in owners:
            return False  # not the pod this Task made (an adoption refused, a stranger's pod)
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return False
        update = from_pod(pod)
        forged = (task.get("status") or {}).get("state")
        msg = f"status.state {forged} was not written by the master: corrected from the pod"
        self.events.warning(task, "StatusCorrected", msg)
        log.warning("task %s: %s", key, msg)
        self.launched.add(key)
        corrected = TaskUpdate(
            update.state, update.reason, f"{update.message}; {msg}" if update.message else msg
        )
        self._set_state(key, task, corrected, now, extra={"finishedAt": None})
        return True

    def _set_state(
        self, key: str, task: dict, update: TaskUpdate, now: float, extra: dict | None = None
    ) -> None:
        status = task.get("status") or {}
        if status.get("state") == update.state.value and not extra:
            return
        if status.get("state") is None and update.reason == "REASON_POD_PENDING":
            return  # a task without a state is TASK_STAGING already; saying so costs a write per task
        if self.status_writes.busy(key, update.state.value):
            return  # its write is under way; the task is synced again when it ends (if this differs)
        name = ns_name(key)[1]
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
            if update.state not in (TaskState.FINISHED, TaskState.KILLED):
                self.events.warning(task, update.state.value, f"{update.reason}: {update.message}")
        agent, terminal = task["spec"]["agent"], update.state in TERMINAL_TASK_STATES

        def after(_body: dict) -> None:
            if terminal:
                self.request_allocation([agent])

        self.status_writes.write(key, update.state.value, patch, after)

    def kill_wanted(self, task: dict) -> bool:
        """Killed on request (spec.kill), or because its framework was removed: being deleted, or
        TORN_DOWN after its failover timeout. Read from what is stored, so a TEARDOWN writes
        nothing per task (it was a spec.kill patch each, on the engine's loop: 40 s of a stalled
        loop for a framework of 2,000 tasks at QPS 50), and a master taking over mid-teardown
        goes on killing. A Framework not in the cache kills nothing: its Task may show first."""
        if task["spec"].get("kill"):
            return True
        with self.cache.lock:
            fw = self.cache.frameworks.get(
                framework_key(task["metadata"]["namespace"], task["spec"]["framework"])
            )
        if fw is None:
            return False
        return bool(fw["metadata"].get("deletionTimestamp")) or (
            (fw.get("status") or {}).get("phase") == FrameworkPhase.TORN_DOWN.value
        )

    @staticmethod
    def _killed_because(task: dict) -> str:
        if task["spec"].get("kill"):
            return "killed on request (spec.kill)"
        return "killed: its framework was removed (TEARDOWN)"
