"""SchedulerDriver: a framework's connection to the mesoskube master, over the Kubernetes API.

The calls and callbacks are those of libmesos' `MesosSchedulerDriver`; underneath each call is
one object write in the framework's namespace (the contract with the master):

| Mesos call | what the driver writes |
|---|---|
| SUBSCRIBE | creates Framework `name` (or reuses it: failover of the scheduler process) |
| HEARTBEAT | creates and renews Lease `name` (coordination.k8s.io/v1) every `heartbeat_interval` |
| ACCEPT / DECLINE | one merge patch of `spec.answer` on the Offer (`create_tasks`: Tasks first) |
| REVIVE / SUPPRESS | merge patch `spec.revive` = n + 1 (with `suppress: false`) / `spec.suppress: true` |
| KILL | merge patch `spec.kill: true` on the Task |
| RECONCILE | merge patch `spec.reconcile` {id: n + 1, taskIds}; answers come in `status.reconciled` |
| TEARDOWN | deletes the Framework (stop(failover=False)) |

Events come from three list+watch streams (Offers and Tasks labelled with the framework, and the
Framework itself); they feed one queue, and one thread runs the scheduler's callbacks in order.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from mesoskube import API_GROUP, API_VERSION
from mesoskube.api.models import (
    DEFAULT_ROLE,
    TERMINAL_TASK_STATES,
    Capability,
    FrameworkPhase,
    OfferPhase,
    TaskInfo,
    TaskState,
)
from mesoskube.frameworks.sdk.retry import APPLIED, WritePolicy, describe, is_transient
from mesoskube.frameworks.sdk.scheduler import Scheduler
from mesoskube.frameworks.sdk.types import DriverStatus, Offer, StatusSource, TaskStatus
from mesoskube.frameworks.sdk.watch import ListWatch
from mesoskube.kube import Kube
from mesoskube.master.builders import task_manifest

log = logging.getLogger(__name__)

LABEL_FRAMEWORK = "mesoskube.io/framework"  # same key as mesoskube.master.LABEL_FRAMEWORK
LEASE_DURATION_SECONDS = 15
HEARTBEAT_INTERVAL_SECONDS = 5.0
GONE_OFFER_PHASES = frozenset({OfferPhase.RESCINDED, OfferPhase.EXPIRED})
MAX_PARALLEL_CREATES = 8  # an accept's Task creates (create_tasks) go side by side, this many at once

TaskLike = TaskInfo | dict[str, Any]


def micro_time(ts: float | None = None) -> str:
    """Kubernetes MicroTime: RFC 3339 with exactly six fractional digits."""
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _TaskIdTaken(Exception):
    """create_tasks: a Task of the accept's name exists and is not ours (another offer's, another
    framework's, or finished)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"task id {name} is already used")
        self.name = name


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


def create_tasks_default() -> bool:
    return os.environ.get("MESOSKUBE_CREATE_TASKS", "true").strip().lower() != "false"


@dataclass
class DriverStats:
    """Counts of the driver's own API writes and of events, for tests and benchmarks."""

    answers: int = 0
    accepts: int = 0
    declines: int = 0
    kills: int = 0
    revives: int = 0
    suppresses: int = 0
    reconciles: int = 0
    lease_renewals: int = 0
    offers_received: int = 0
    offers_rescinded: int = 0
    status_updates: int = 0
    task_creates: int = 0  # Tasks whose create the driver sent (create_tasks), one each however many retries


class SchedulerDriver:
    """Connects a `Scheduler` to the master. Thread-safe: calls may come from any thread.

    `create_tasks`: the framework creates its Task objects from its own client and answers with
    their names (OfferAnswer.taskNames); the master's launch client then spends one write per task
    (the pod) instead of two. An accept then costs one create per task (side by side) and the
    answer patch. A create refused (a task id taken in the namespace, 422 or 403) deletes the
    Tasks this accept created, declines the offer and gives every task of the accept TASK_ERROR;
    a create that never got through deletes them as well, and the offer is outstanding again.
    False: the answer carries the TaskInfos and the master creates the Tasks. None (the default):
    $MESOSKUBE_CREATE_TASKS ("false" turns it off; on otherwise), so that frameworks built on the
    SDK (Spark's, the pods framework, the Mesos HTTP API) switch without code changes.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        framework_name: str,
        namespace: str,
        roles: Sequence[str] = ("*",),
        kube: Kube | None = None,
        failover_timeout: float = 0.0,
        capabilities: Iterable[Capability | str] = (),
        default_refuse_seconds: float | None = None,
        user: str | None = None,
        identity: str | None = None,
        lease_duration: int = LEASE_DURATION_SECONDS,
        heartbeat_interval: float = HEARTBEAT_INTERVAL_SECONDS,
        offer_batch_window: float = 0.05,
        watch_timeout: int = 60,
        labels: dict[str, str] | None = None,
        tolerations: Sequence[dict[str, Any]] = (),
        writes: WritePolicy | None = None,
        create_tasks: bool | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.framework_name = framework_name
        self.namespace = namespace
        self.roles = list(roles) or ["*"]
        self.kube = kube or Kube.connect()
        self.failover_timeout = float(failover_timeout)
        self.capabilities = [Capability(c) for c in capabilities]
        self.default_refuse_seconds = default_refuse_seconds
        self.user = user
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_duration = int(lease_duration)
        self.heartbeat_interval = float(heartbeat_interval)
        self.offer_batch_window = float(offer_batch_window)
        self.watch_timeout = int(watch_timeout)
        self.labels = dict(labels or {})
        self.tolerations = [dict(t) for t in tolerations]
        self.create_tasks = create_tasks_default() if create_tasks is None else bool(create_tasks)
        self.stats = DriverStats()
        # Transient write errors are retried (retry.py); a stopped driver stops sleeping at once.
        self.writes = writes or WritePolicy(sleep=lambda s: self._stopped.wait(s))

        self.framework_id: str | None = None
        self._status = DriverStatus.NOT_STARTED
        self._lock = threading.RLock()  # guards the state below shared with caller threads
        self._stopped = threading.Event()  # ends the watch, heartbeat and event threads
        self._done = threading.Event()  # join() returns
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._timers: list[_Timer] = []
        self._timer_seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._watchers: list[ListWatch] = []
        self._event_thread: threading.Thread | None = None

        # Event-thread state.
        self._registered = False
        self._connected = False
        self._held: list[tuple[str, Any]] = []  # offer/task events that arrived before registration
        self._batch: list[Offer] = []
        self._batch_deadline = 0.0
        self._task_states: dict[str, TaskState] = {}
        self._reconciled_seen: set[int] = set()

        # Shared state (under _lock).
        self._outstanding: dict[str, Offer] = {}  # delivered (or about to be), not answered
        self._answered: set[str] = set()
        self._gone: set[str] = set()  # rescinded/expired/deleted before we answered
        self._accepted: dict[str, list[str]] = {}  # offer -> task names, until the offer is deleted
        self._framework_obj: dict[str, Any] = {}
        self._revive = 0
        self._reconcile_id = 0
        self._lease_created = False
        self._lease_owner_set = False
        self._framework_uid: str | None = None
        # Tasks an accept created and then deleted again (create_tasks), by uid: their watch
        # events are not the scheduler's (it got the driver's TASK_ERROR or TASK_LOST instead).
        self._rolled_back: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None  # the side-by-side Task creates and deletes

    # ------------------------------------------------------------------ lifecycle

    @property
    def status(self) -> DriverStatus:
        return self._status

    def start(self) -> DriverStatus:
        """Subscribe (create or reuse the Framework), start heartbeats, watches and callbacks."""
        with self._lock:
            if self._status is not DriverStatus.NOT_STARTED:
                return self._status
            self._status = DriverStatus.RUNNING
        try:
            self.writes.call(lambda: self._renew_lease(first=True), "creating the heartbeat Lease")
            self._subscribe()
        except Exception:
            with self._lock:
                self._status = DriverStatus.ABORTED
            self._done.set()
            raise
        self._event_thread = threading.Thread(
            target=self._event_loop, name=f"driver-{self.framework_name}-events", daemon=True
        )
        self._event_thread.start()
        sel = f"{LABEL_FRAMEWORK}={self.framework_name}"
        custom = self.kube.custom.list_namespaced_custom_object
        for plural, kind, selectors in (
            ("frameworks", "framework", {"field_selector": f"metadata.name={self.framework_name}"}),
            ("offers", "offer", {"label_selector": sel}),
            ("tasks", "task", {"label_selector": sel}),
        ):
            w = ListWatch(
                f"driver-{self.framework_name}-{plural}",
                custom,
                (API_GROUP, API_VERSION, self.namespace, plural),
                self._emitter(kind),
                self._stopped,
                timeout_seconds=self.watch_timeout,
                **selectors,
            )
            self._watchers.append(w)
        hb = threading.Thread(
            target=self._heartbeat_loop, name=f"driver-{self.framework_name}-heartbeat", daemon=True
        )
        self._threads = [*self._watchers, hb]
        for t in self._threads:
            t.start()
        return self._status

    def join(self, timeout: float | None = None) -> DriverStatus:
        """Block until the driver is stopped or aborted (and, from another thread, until its event
        thread has returned, so the process can exit without cutting a callback short)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._done.wait(timeout)
        t = self._event_thread
        if self._done.is_set() and t is not None and t is not threading.current_thread():
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._status

    def run(self) -> DriverStatus:
        self.start()
        return self.join()

    def stop(self, failover: bool = False) -> DriverStatus:
        """Stop the driver. failover=False tears the framework down (deletes the Framework: the
        master kills its tasks and rescinds its offers); failover=True leaves it for a new
        scheduler process to re-register within failover_timeout."""
        return self._shutdown(DriverStatus.STOPPED, teardown=not failover)

    def abort(self) -> DriverStatus:
        """Stop without tearing down (like failover); join() returns DRIVER_ABORTED."""
        return self._shutdown(DriverStatus.ABORTED, teardown=False)

    def _shutdown(self, final: DriverStatus, teardown: bool) -> DriverStatus:
        with self._lock:
            if self._status is not DriverStatus.RUNNING:
                return self._status
            self._status = final
        self._stopped.set()
        self._events.put(("stop", None))  # wake the event thread
        for w in self._watchers:
            w.stop()
        if teardown:
            self._teardown()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        self._done.set()
        me = threading.current_thread()
        for t in [*self._threads, self._event_thread]:
            if t is not None and t is not me and t.is_alive():
                t.join(timeout=2)
        return final

    def _teardown(self) -> None:
        gone = lambda e: e.status == 404  # noqa: E731  (on a retry: our earlier delete went through)
        try:
            self.writes.call(
                lambda: self.kube.delete("frameworks", self.namespace, self.framework_name),
                "teardown",
                applied=gone,
                deadline=30,
            )
        except Exception as e:
            if not (isinstance(e, ApiException) and e.status == 404):
                log.warning("teardown of %s failed: %s", self.framework_name, describe(e))
        try:
            self.writes.call(
                lambda: self.kube.coordination.delete_namespaced_lease(self.framework_name, self.namespace),
                "deleting the heartbeat Lease",
                applied=gone,
                deadline=10,
            )
        except Exception as e:
            if not (isinstance(e, ApiException) and e.status == 404):
                log.warning("deleting lease %s failed: %s", self.framework_name, describe(e))

    # ------------------------------------------------------------------ subscribe and heartbeat

    def _framework_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "roles": self.roles,
            "failoverTimeoutSeconds": self.failover_timeout,
            "capabilities": [c.value for c in self.capabilities],
        }
        if self.default_refuse_seconds is not None:
            spec["defaultFilters"] = {"refuseSeconds": self.default_refuse_seconds}
        if self.user:
            spec["user"] = self.user
        if self.tolerations:
            spec["tolerations"] = self.tolerations
        return spec

    def _subscribe(self) -> None:
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "Framework",
            "metadata": {"name": self.framework_name, "namespace": self.namespace, "labels": self.labels},
            # The principal is who we are: the chart's admission policy accepts no other, and lets
            # only it answer this framework's offers and kill its tasks.
            "spec": {**self._framework_spec(), "principal": self.kube.whoami()},
        }
        deadline = time.monotonic() + 60
        while True:
            try:
                # A retried create our first attempt had applied answers 409: re-registered below.
                obj = self.writes.call(
                    lambda: self.kube.create("frameworks", self.namespace, body), "subscribing"
                )
                break
            except ApiException as e:
                if e.status != 409:
                    raise
            obj = self._get_framework()
            if obj is None:
                continue  # deleted in between: create again
            if (obj.get("status") or {}).get("phase") == FrameworkPhase.TORN_DOWN:
                # Its failover timeout expired: that framework is over. Start a new one.
                log.info("framework %s was torn down; replacing it with a new one", self.framework_name)
                try:
                    self.kube.delete("frameworks", self.namespace, self.framework_name)
                except ApiException as e:
                    if e.status != 404:
                        raise
                continue
            if obj["metadata"].get("deletionTimestamp"):
                # A previous incarnation is being torn down; a new one can only follow it.
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Framework {self.framework_name} still being torn down after 60s")
                time.sleep(0.2)
                continue
            obj = self._reregister(obj)
            break
        with self._lock:
            self._framework_obj = obj
            self._framework_uid = obj["metadata"]["uid"]
            self._revive = max(self._revive, int((obj.get("spec") or {}).get("revive") or 0))
            rec = (obj.get("spec") or {}).get("reconcile") or {}
            self._reconcile_id = max(self._reconcile_id, int(rec.get("id") or 0))

    def _get_framework(self) -> dict[str, Any] | None:
        try:
            return self.writes.call(
                lambda: self.kube.get("frameworks", self.namespace, self.framework_name),
                "reading the Framework",
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _reregister(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Failover of the scheduler process: reuse the Framework; update what may change."""
        current = obj.get("spec") or {}
        wanted = self._framework_spec()
        roles_change = bool(current.get("roles")) and current["roles"] != wanted["roles"]
        if roles_change and Capability.MULTI_ROLE not in self.capabilities:
            raise ValueError(
                f"Framework {self.framework_name} exists with roles {current['roles']}; "
                f"roles {wanted['roles']} need the MULTI_ROLE capability to change on re-registration"
            )
        patch = {k: v for k, v in wanted.items() if current.get(k) != v}
        log.info("re-registering existing framework %s (changes: %s)", self.framework_name, patch or "none")
        if patch:
            obj = self.writes.call(
                lambda: self.kube.patch("frameworks", self.namespace, self.framework_name, {"spec": patch}),
                "re-registering",
            )
        return obj

    def _lease_body(self, now: str) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.framework_name,
                "namespace": self.namespace,
                "labels": {LABEL_FRAMEWORK: self.framework_name},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_duration,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }

    def _renew_lease(self, first: bool = False) -> None:
        """Create the Lease (before the Framework, so the master never sees one without a
        heartbeat), take it over on failover, then renew it with one patch each time."""
        coord = self.kube.coordination
        name, ns = self.framework_name, self.namespace
        now = micro_time()
        if first or not self._lease_created:
            try:
                coord.create_namespaced_lease(ns, self._lease_body(now))
                self._lease_created = True
                return
            except ApiException as e:
                if e.status != 409:
                    raise
            # Failover: a previous scheduler process held it.
            lease = coord.read_namespaced_lease(name, ns)
            transitions = (lease.spec.lease_transitions or 0) + (
                1 if lease.spec.holder_identity != self.identity else 0
            )
            coord.patch_namespaced_lease(
                name,
                ns,
                {
                    "spec": {
                        "holderIdentity": self.identity,
                        "leaseDurationSeconds": self.lease_duration,
                        "acquireTime": now,
                        "renewTime": now,
                        "leaseTransitions": transitions,
                    }
                },
                _content_type="application/merge-patch+json",
            )
            self._lease_created = True
            return
        ops: list[dict[str, Any]] = [
            # Fails (422) if another scheduler process took the lease over: we were failed over.
            {"op": "test", "path": "/spec/holderIdentity", "value": self.identity},
            {"op": "replace", "path": "/spec/renewTime", "value": now},
        ]
        if not self._lease_owner_set and self._framework_uid:
            ops.append(
                {
                    "op": "add",
                    "path": "/metadata/ownerReferences",
                    "value": [
                        {
                            "apiVersion": f"{API_GROUP}/{API_VERSION}",
                            "kind": "Framework",
                            "name": self.framework_name,
                            "uid": self._framework_uid,
                        }
                    ],
                }
            )
        coord.patch_namespaced_lease(name, ns, ops, _content_type="application/json-patch+json")
        self._lease_owner_set = True
        self.stats.lease_renewals += 1

    def _heartbeat_loop(self) -> None:
        while not self._stopped.wait(self.heartbeat_interval):
            try:
                # Retried within a lease duration; after that the next heartbeat tries afresh.
                self.writes.call(
                    self._renew_lease,
                    "lease renewal",
                    give_up=self._stopped.is_set,
                    deadline=max(self.heartbeat_interval, self.lease_duration / 2),
                )
            except ApiException as e:
                if self._stopped.is_set():
                    return
                if e.status == 404:
                    self._lease_created = False  # recreate it next time
                    continue
                if e.status == 422:
                    self._events.put(("fatal", "Framework failed over (another scheduler holds the lease)"))
                    return
                log.warning("lease renewal failed: HTTP %s %s", e.status, e.reason)
            except Exception as e:
                log.warning("lease renewal failed: %s", e)

    # ------------------------------------------------------------------ calls

    def accept(
        self, offer_id: str, tasks: Sequence[TaskLike], filters: dict[str, Any] | None = None
    ) -> DriverStatus:
        """Launch `tasks` on the offer (one patch; with create_tasks, one Task create per task
        before it). What they leave unused goes back to the master, filtered for
        filters['refuseSeconds'] (default: the framework's default)."""
        infos = [t if isinstance(t, TaskInfo) else TaskInfo.model_validate(t) for t in tasks]
        answer: dict[str, Any] = {
            "type": "Accept",
            "tasks": [t.model_dump(mode="json", exclude_none=True) for t in infos],
        }
        if filters:
            answer["filters"] = dict(filters)
        return self._answer(offer_id, answer, infos)

    launch_tasks = accept

    def decline(self, offer_id: str, refuse_seconds: float | None = None) -> DriverStatus:
        """Decline the whole offer; the agent is not re-offered for refuse_seconds (default 5 s or
        the framework's defaultFilters)."""
        answer: dict[str, Any] = {"type": "Decline"}
        if refuse_seconds is not None:
            answer["filters"] = {"refuseSeconds": float(refuse_seconds)}
        return self._answer(offer_id, answer, [])

    def _answer(self, offer_id: str, answer: dict[str, Any], tasks: list[TaskInfo]) -> DriverStatus:
        with self._lock:
            if self._status is not DriverStatus.RUNNING:
                return self._status
            if offer_id in self._answered:
                log.warning("offer %s was already answered; ignoring a second answer", offer_id)
                return self._status
            self._answered.add(offer_id)
            held = self._outstanding.pop(offer_id, None)
            gone = offer_id in self._gone
            framework_uid = self._framework_uid
        if gone:
            self._invalid_offer(offer_id, tasks, "the offer was rescinded before the answer")
            return self._status
        if tasks:
            with self._lock:
                self._accepted[offer_id] = [t.name for t in tasks]

        own = self.create_tasks and bool(tasks) and answer["type"] == "Accept"
        if own and (held is None or framework_uid is None):
            # Not an offer we hold: its role and agent are unknown here, so the master makes the Tasks.
            log.warning("offer %s is not one this driver holds; its tasks go inline in the answer", offer_id)
            own = False
        created: list[dict[str, Any]] = []  # the Tasks this accept created (create_tasks)
        if own:
            assert held is not None and framework_uid is not None
            made = self._create_tasks(offer_id, held, framework_uid, tasks)
            if made is None:
                return self._status  # refused or not stored: rolled back, the scheduler told
            created = made
            answer = {"type": "Accept", "taskNames": [t.name for t in tasks]} | (
                {"filters": answer["filters"]} if answer.get("filters") else {}
            )
        # create_tasks: whether a 404 on a retry met the master's processing of our own answer
        # (True), certainly not (False), or cannot be told (None: see _answer_taken).
        taken: bool | None = False

        def applied(e: ApiException) -> bool:
            # On a retry, 404 may be our own earlier attempt: the master processed it and deleted
            # the offer. For an accept its Tasks then exist (inline) or have been taken up by the
            # master (create_tasks); for a decline nothing is left to say.
            nonlocal taken
            if e.status != 404 or not tasks:
                return False
            if not created:
                return self._tasks_exist(tasks)
            taken = self._answer_taken(created[0])
            return taken is True

        try:
            done = self.writes.call(
                lambda: self.kube.patch("offers", self.namespace, offer_id, {"spec": {"answer": answer}}),
                f"answering offer {offer_id}",
                applied=applied,
                give_up=lambda: offer_id in self._gone or self._stopped.is_set(),
            )
        except ApiException as e:
            if e.status == 404 and taken is None:
                # Our answer may have been taken up (the master deletes the offer once every named
                # Task has its pod), or not: deleting the Tasks could end launched tasks, and a
                # TASK_LOST from here could be wrong. The master tells: their launch, or, if it
                # never took the answer, TASK_LOST/TASK_DROPPED (their offer gone, no accept).
                log.warning(
                    "offer %s: gone on a retry of its accept; its Tasks are the master's to tell", offer_id
                )
                with self._lock:
                    self._accepted.pop(offer_id, None)
            elif e.status == 404:
                self._roll_back(created)
                self._invalid_offer(offer_id, tasks, "the offer no longer exists")
            elif e.status == 422 and tasks:
                msg = _api_message(e)
                self._roll_back(created)
                for t in tasks:
                    self._post_status(t.name, TaskState.ERROR, "REASON_TASK_INVALID", msg)
                self._release_after_invalid_accept(offer_id, msg)
            elif e.status and e.status < 500 and e.status != 429:
                log.error("answering offer %s failed: HTTP %s %s", offer_id, e.status, _api_message(e))
                self._roll_back(created)
                for t in tasks:
                    self._post_status(t.name, TaskState.ERROR, "REASON_TASK_INVALID", _api_message(e))
            else:
                self._roll_back(created)
                self._answer_not_stored(offer_id, held, tasks, describe(e))
            return self._status
        except Exception as e:  # transport errors past the deadline: the API never took the answer
            self._roll_back(created)
            self._answer_not_stored(offer_id, held, tasks, describe(e))
            return self._status
        if done is APPLIED and not tasks:
            return self._status
        self.stats.answers += 1
        if answer["type"] == "Accept":
            self.stats.accepts += 1
        else:
            self.stats.declines += 1
        return self._status

    def _tasks_exist(self, tasks: list[TaskInfo]) -> bool:
        """Whether the master created these Tasks (all or none: it rolls back a partial accept)."""
        try:
            body = self.kube.get("tasks", self.namespace, tasks[0].name)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return (body.get("spec") or {}).get("framework") == self.framework_name

    def _answer_taken(self, task: dict[str, Any]) -> bool | None:
        """create_tasks: whether the master took up our answer naming `task` (the first of the
        accept), its Offer being gone. The Tasks existed before the answer, so their existence
        says nothing; the master deletes the Offer only once every named Task has its pod or
        (a refused accept) its TASK_ERROR. So: True if the Task has a status (the master writes
        every one) or a pod of its own (labelled with the framework, owned by the Task); False
        if neither; None if it has no status and its pod cannot be read (the chart's framework
        Role grants no pod read: 403), as the master writes no status before the pod has a real
        state: only the Task's status is known then, and a launch just made is not told apart."""
        name = task["metadata"]["name"]
        try:
            body = self.kube.get("tasks", self.namespace, name)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        uid = body["metadata"].get("uid")
        if uid != task["metadata"].get("uid"):
            return False  # not the Task this accept created
        if (body.get("status") or {}).get("state"):
            return True
        try:
            pod = self.kube.core.read_namespaced_pod(name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return False
            if e.status == 403:
                return None
            raise
        meta = pod.metadata
        owners = {o.uid for o in meta.owner_references or []}
        return (meta.labels or {}).get(LABEL_FRAMEWORK) == self.framework_name and uid in owners

    # create_tasks: the framework's own Tasks ---------------------------------------

    def _create_tasks(
        self, offer_id: str, held: Offer, framework_uid: str, tasks: list[TaskInfo]
    ) -> list[dict[str, Any]] | None:
        """Create the accept's Tasks, side by side, exactly as the master would have made them
        (builders.task_manifest: spec.offer, the Offer's role and agent, the framework's owner
        reference and tolerations). Returns the stored Tasks, or None when the accept ended here:
        refused (a task id taken, 422, 403: rolled back, the offer declined, TASK_ERROR for every
        task) or not stored (rolled back, the offer outstanding again, TASK_LOST or TASK_DROPPED)."""
        spec = held.spec
        # The Framework's own tolerations, as the master compares them (check_named): a driver
        # re-registering without any keeps those the Framework already has.
        with self._lock:
            fw_spec = (self._framework_obj or {}).get("spec") or {}
        tolerations = fw_spec.get("tolerations") if fw_spec else self.tolerations
        manifests = []
        for t in tasks:
            m = task_manifest(
                t,
                self.framework_name,
                framework_uid,
                spec.role or DEFAULT_ROLE,
                spec.agent,
                offer_id,
                tolerations or None,
            )
            m["metadata"]["namespace"] = self.namespace
            manifests.append(m)
        with self._lock:
            self.stats.task_creates += len(manifests)
        outcomes = self._side_by_side(lambda m: self._create_task(offer_id, m), manifests)
        created = [o for o in outcomes if isinstance(o, dict)]
        failed = [
            (m["metadata"]["name"], o)
            for m, o in zip(manifests, outcomes, strict=True)
            if not isinstance(o, dict)
        ]
        if not failed:
            return created
        taken = [name for name, e in failed if isinstance(e, _TaskIdTaken)]
        refused = [
            (name, e)
            for name, e in failed
            if isinstance(e, ApiException) and e.status and not is_transient(e)
        ]
        # A create that never got an answer may have been stored all the same (a lost reply).
        answered = set(taken) | {name for name, _ in refused}
        unsure = [name for name, _ in failed if name not in answered]
        self._roll_back(created, offer_id, unsure)
        if not taken and not refused:
            self._answer_not_stored(offer_id, held, tasks, describe(failed[0][1]))
            return None
        if taken:
            ids = ", ".join(taken)
            why = {
                name: f"task id {name} is already used in namespace {self.namespace}: task ids are unique "
                "in a namespace, finished tasks included; launch it under another name"
                for name in taken
            }
            default = (
                f"accept of offer {offer_id} refused, nothing launched: task id {ids} is already used "
                f"in namespace {self.namespace}"
            )
        else:
            why = {name: _api_message(e) for name, e in refused}
            first, msg = refused[0][0], why[refused[0][0]]
            default = f"accept of offer {offer_id} refused, nothing launched: task {first}: {msg}"
        self._release_after_invalid_accept(offer_id, "; ".join(why.values()))
        with self._lock:
            self._accepted.pop(offer_id, None)
        for t in tasks:
            self._post_status(t.name, TaskState.ERROR, "REASON_TASK_INVALID", why.get(t.name, default))
        return None

    def _create_task(self, offer_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """One Task create through the write policy. A 409 is our own Task (an earlier attempt
        whose reply was lost, or an earlier try of an accept of this offer: its spec.offer and
        spec.framework are ours), or a task id taken: _TaskIdTaken."""
        name = manifest["metadata"]["name"]
        conflict: ApiException | None = None
        for _ in range(3):  # a Task deleted between our create and our read: create again
            try:
                body = self.writes.call(
                    lambda: self.kube.create("tasks", self.namespace, manifest),
                    f"creating task {name}",
                    give_up=self._stopped.is_set,
                )
                assert isinstance(body, dict)
                return body
            except ApiException as e:
                if e.status != 409:
                    raise
                conflict = e
            holder = self._read_task(name)
            if holder is None:
                continue
            if self._ours(holder, offer_id):
                with self._lock:  # launched again after a roll-back that could not delete it
                    self._rolled_back.discard(holder["metadata"].get("uid") or "")
                return holder
            raise _TaskIdTaken(name)
        assert conflict is not None
        raise conflict

    def _read_task(self, name: str) -> dict[str, Any] | None:
        try:
            body = self.writes.call(
                lambda: self.kube.get("tasks", self.namespace, name),
                f"reading task {name}",
                give_up=self._stopped.is_set,
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        assert isinstance(body, dict)
        return body

    def _ours(self, task: dict[str, Any], offer_id: str) -> bool:
        spec = task.get("spec") or {}
        return spec.get("offer") == offer_id and spec.get("framework") == self.framework_name

    def _roll_back(
        self, created: list[dict[str, Any]], offer_id: str = "", unsure: Sequence[str] = ()
    ) -> None:
        """Delete the Tasks an accept created (best effort, side by side), and those whose create
        got no answer if they turn out to be ours. Their watch events are the scheduler's no more:
        it hears of them from the driver (TASK_ERROR, TASK_LOST)."""
        if not created and not unsure:
            return

        def forget(task: dict[str, Any]) -> None:
            with self._lock:
                self._rolled_back.add(task["metadata"].get("uid") or "")

        def delete(name: str) -> None:
            if name in unsure:
                holder = self._read_task(name)
                if holder is None or not self._ours(holder, offer_id):
                    return
                forget(holder)
            self.writes.call(
                lambda: self.kube.delete("tasks", self.namespace, name),
                f"deleting task {name} (accept rolled back)",
                applied=lambda e: e.status == 404,  # on a retry: our earlier delete went through
                give_up=self._stopped.is_set,
                deadline=30,
            )

        for task in created:
            forget(task)
        names = [t["metadata"]["name"] for t in created] + list(unsure)
        for name, outcome in zip(names, self._side_by_side(delete, names), strict=True):
            if isinstance(outcome, BaseException) and not (
                isinstance(outcome, ApiException) and outcome.status == 404
            ):
                # Left to the master: a Task no accept named gets TASK_ERROR or TASK_LOST, no pod.
                log.warning("deleting task %s of a rolled-back accept failed: %s", name, describe(outcome))

    def _side_by_side(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """fn(item) for each item, at most MAX_PARALLEL_CREATES at once; each result or exception."""

        def outcome(item: Any) -> Any:
            try:
                return fn(item)
            except Exception as e:
                return e

        if len(items) <= 1:
            return [outcome(x) for x in items]
        with self._lock:
            if self._pool is None and not self._stopped.is_set():
                self._pool = ThreadPoolExecutor(
                    MAX_PARALLEL_CREATES, thread_name_prefix=f"driver-{self.framework_name}-writes"
                )
            pool = self._pool
        if pool is None:
            return [outcome(x) for x in items]
        try:
            futures = [pool.submit(outcome, x) for x in items]
        except RuntimeError:  # shut down by a stop() in between
            return [outcome(x) for x in items]
        return [f.result() for f in futures]

    def _answer_not_stored(self, offer_id: str, held: Offer | None, tasks: list[TaskInfo], why: str) -> None:
        """The answer never reached the API server: the offer is not answered. It is outstanding again
        (the scheduler may answer it once more) unless it went away; its tasks were never launched."""
        log.error("answer to offer %s not stored (%s); the offer is outstanding again", offer_id, why)
        with self._lock:
            self._answered.discard(offer_id)
            self._accepted.pop(offer_id, None)
            if held is not None and offer_id not in self._gone:
                self._outstanding[offer_id] = held
        # Mesos: a launch the master never received is TASK_DROPPED/TASK_LOST.
        state = TaskState.DROPPED if Capability.PARTITION_AWARE in self.capabilities else TaskState.LOST
        for t in tasks:
            self._post_status(
                t.name, state, "REASON_MASTER_DISCONNECTED", f"offer {offer_id}: answer not stored: {why}"
            )

    def _release_after_invalid_accept(self, offer_id: str, msg: str) -> None:
        """The accept was refused (by the API server: schema/CEL/admission; or, with create_tasks,
        by the driver: a task id taken): decline so the resources go back."""
        log.error("accept of offer %s refused: %s", offer_id, msg)
        try:
            self.writes.call(
                lambda: self.kube.patch(
                    "offers", self.namespace, offer_id, {"spec": {"answer": {"type": "Decline"}}}
                ),
                f"declining offer {offer_id}",
                give_up=self._stopped.is_set,
            )
            self.stats.answers += 1
            self.stats.declines += 1
        except Exception as e:
            log.warning("declining offer %s after a refused accept failed: %s", offer_id, describe(e))

    def _invalid_offer(self, offer_id: str, tasks: list[TaskInfo], why: str) -> None:
        # Mesos: launching on an offer that is gone gives TASK_DROPPED (partition-aware) or
        # TASK_LOST, reason REASON_INVALID_OFFERS.
        state = TaskState.DROPPED if Capability.PARTITION_AWARE in self.capabilities else TaskState.LOST
        for t in tasks:
            self._post_status(t.name, state, "REASON_INVALID_OFFERS", f"offer {offer_id}: {why}")

    def _post_status(self, task_id: str, state: TaskState, reason: str, message: str) -> None:
        self._events.put(
            (
                "status",
                TaskStatus(
                    task_id=task_id, state=state, reason=reason, message=message, source=StatusSource.DRIVER
                ),
            )
        )

    def _patch_framework(self, spec: dict[str, Any]) -> None:
        """Revive, suppress, reconcile: merge patches, so a retry that meets its own effect is harmless."""
        self.writes.call(
            lambda: self.kube.patch("frameworks", self.namespace, self.framework_name, {"spec": spec}),
            f"updating Framework {self.framework_name} ({', '.join(spec)})",
            give_up=self._stopped.is_set,
        )

    def revive(self) -> DriverStatus:
        """Clear this framework's filters and un-suppress it (one patch)."""
        with self._lock:
            if self._status is not DriverStatus.RUNNING:
                return self._status
            self._revive += 1
            n = self._revive
        self._patch_framework({"revive": n, "suppress": False})
        self.stats.revives += 1
        return self._status

    revive_offers = revive

    def suppress(self) -> DriverStatus:
        """No offers until revive()."""
        if self._status is not DriverStatus.RUNNING:
            return self._status
        self._patch_framework({"suppress": True})
        self.stats.suppresses += 1
        return self._status

    suppress_offers = suppress

    def kill_task(self, task_id: str) -> DriverStatus:
        if self._status is not DriverStatus.RUNNING:
            return self._status
        try:
            self.writes.call(
                lambda: self.kube.patch("tasks", self.namespace, task_id, {"spec": {"kill": True}}),
                f"killing task {task_id}",
                give_up=self._stopped.is_set,
            )
            self.stats.kills += 1
        except ApiException as e:
            if e.status != 404:
                raise
            # Mesos answers a kill of an unknown task with TASK_LOST (reconciliation).
            self._post_status(task_id, TaskState.LOST, "REASON_RECONCILIATION", "kill of an unknown task")
        return self._status

    def forget_task(self, task_id: str) -> DriverStatus:
        """Delete a terminal Task so its name can be launched again (Mesos lets a framework reuse
        the id of a task that has ended). A task not known to be terminal is left alone."""
        if self._status is not DriverStatus.RUNNING:
            return self._status
        if self._task_states.get(task_id) not in TERMINAL_TASK_STATES:
            log.warning("forget_task(%s): not terminal; not deleted", task_id)
            return self._status
        try:
            self.kube.delete("tasks", self.namespace, task_id)
        except ApiException as e:
            if e.status != 404:
                raise
        return self._status

    def reconcile_tasks(self, task_ids: Iterable[str] = ()) -> DriverStatus:
        """Ask the master for the state of these tasks ([] = all of this framework's tasks);
        answers arrive as status_update callbacks."""
        with self._lock:
            if self._status is not DriverStatus.RUNNING:
                return self._status
            self._reconcile_id += 1
            n = self._reconcile_id
        self._patch_framework({"reconcile": {"id": n, "taskIds": list(task_ids)}})
        self.stats.reconciles += 1
        return self._status

    def call_later(self, delay: float, fn: Callable[[], None]) -> _Timer:
        """Run fn on the callback thread after `delay` seconds (in order with the callbacks)."""
        timer = _Timer(time.monotonic() + max(0.0, delay), next(self._timer_seq), fn)
        self._events.put(("timer", timer))
        return timer

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run fn on the callback thread after the events already queued."""
        self._events.put(("call", fn))

    # ------------------------------------------------------------------ introspection

    def outstanding_offers(self) -> list[Offer]:
        with self._lock:
            return list(self._outstanding.values())

    def framework_object(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._framework_obj)

    # ------------------------------------------------------------------ events

    def _emitter(self, kind: str) -> Callable[[str, Any], None]:
        def emit(event_type: str, obj: Any) -> None:
            self._events.put((kind, (event_type, obj)))

        return emit

    def _event_loop(self) -> None:
        while not self._stopped.is_set():
            now = time.monotonic()
            timeout = 0.5
            if self._timers:
                timeout = min(timeout, self._timers[0].due - now)
            if self._batch:
                timeout = min(timeout, self._batch_deadline - now)
            try:
                kind, payload = self._events.get(timeout=max(0.0, timeout))
            except queue.Empty:
                kind, payload = "", None
            if self._stopped.is_set():
                return
            try:
                if kind == "offer" and self._registered:
                    self._on_offer(*payload)  # may add to the batch: not a reason to flush
                elif kind == "timer":
                    heapq.heappush(self._timers, payload)
                elif kind:
                    self._flush_batch()
                    self._dispatch(kind, payload)
                now = time.monotonic()
                if self._batch and (now >= self._batch_deadline):
                    self._flush_batch()
                while self._timers and self._timers[0].due <= now and not self._stopped.is_set():
                    timer = heapq.heappop(self._timers)
                    if not timer.cancelled:
                        self._flush_batch()
                        self._callback("timer", timer.fn)
            except Exception:
                log.exception("driver event handling failed (%s)", kind)

    def _dispatch(self, kind: str, payload: Any) -> None:
        if kind == "framework":
            self._on_framework(*payload)
        elif kind in ("offer", "task", "status") and not self._registered:
            self._held.append((kind, payload))
        elif kind == "offer":
            self._on_offer(*payload)
        elif kind == "task":
            self._on_task(*payload)
        elif kind == "status":
            self._deliver_status(payload)
        elif kind == "call":
            self._callback("call", payload)
        elif kind == "fatal":
            self._fatal(payload)

    def _callback(self, name: str, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("scheduler callback %s raised", name)

    def _fatal(self, message: str) -> None:
        log.error("framework %s: %s", self.framework_name, message)
        self._callback("error", self.scheduler.error, self, message)
        self.abort()

    # framework ---------------------------------------------------------

    def _on_framework(self, event_type: str, obj: Any) -> None:
        if event_type == "SYNC":
            if not obj:
                if self._registered:
                    self._fatal("Framework has been removed")
                return
            obj = obj[0]
            event_type = "MODIFIED"
        if event_type == "DELETED":
            if self._status is DriverStatus.RUNNING:
                self._fatal("Framework has been removed")
            return
        with self._lock:
            self._framework_obj = obj
            self._framework_uid = obj["metadata"]["uid"]
        status = obj.get("status") or {}
        phase = status.get("phase")
        if obj["metadata"].get("deletionTimestamp") or phase == FrameworkPhase.TORN_DOWN:
            if self._status is DriverStatus.RUNNING:
                self._fatal("Framework has been removed")
            return
        if phase == FrameworkPhase.SUBSCRIBED:
            if not self._registered:
                self._registered = True
                self._connected = True
                self.framework_id = status.get("frameworkId") or obj["metadata"]["uid"]
                self._callback("registered", self.scheduler.registered, self, self.framework_id)
                held, self._held = self._held, []
                for kind, payload in held:
                    self._dispatch(kind, payload)
                self._flush_batch()
            elif not self._connected:
                self._connected = True
                self._callback("reregistered", self.scheduler.reregistered, self)
        elif phase == FrameworkPhase.DISCONNECTED and self._registered and self._connected:
            self._connected = False
            self._callback("disconnected", self.scheduler.disconnected, self)
        self._on_reconciled(status)

    def _on_reconciled(self, status: dict[str, Any]) -> None:
        observed = status.get("observedReconcile")
        if observed is None or observed in self._reconciled_seen or not self._registered:
            return
        self._reconciled_seen.add(observed)
        for item in status.get("reconciled") or []:
            try:
                state = TaskState(item["state"])
            except ValueError:
                log.warning("reconciliation answered an unknown state %r", item.get("state"))
                continue
            self._deliver_status(
                TaskStatus(
                    task_id=item["taskId"],
                    state=state,
                    reason=item.get("reason") or "REASON_RECONCILIATION",
                ),
                force=True,
            )

    # offers ------------------------------------------------------------

    def _on_offer(self, event_type: str, obj: Any) -> None:
        if event_type == "SYNC":
            names = {o["metadata"]["name"] for o in obj}
            with self._lock:
                vanished = [oid for oid in self._outstanding if oid not in names]
            for oid in vanished:
                self._rescind(oid)
            for o in obj:
                self._offer_state(o)
            return
        if event_type == "DELETED":
            name = obj["metadata"]["name"]
            self._rescind(name)
            with self._lock:
                self._answered.discard(name)
                self._gone.discard(name)
                self._accepted.pop(name, None)
            return
        self._offer_state(obj)

    def _answer_refused(self, obj: dict[str, Any]) -> None:
        """The master refused our accept because the offer had been rescinded first (a race):
        its tasks will never exist, so tell the scheduler as Mesos would (TASK_LOST/DROPPED)."""
        name = obj["metadata"]["name"]
        with self._lock:
            names = self._accepted.pop(name, None)
        if names:
            state = TaskState.DROPPED if Capability.PARTITION_AWARE in self.capabilities else TaskState.LOST
            msg = (obj.get("status") or {}).get("message") or "the offer was rescinded before the answer"
            for n in names:
                self._deliver_status(
                    TaskStatus(
                        task_id=n,
                        state=state,
                        reason="REASON_INVALID_OFFERS",
                        message=msg,
                        source=StatusSource.DRIVER,
                    )
                )

    def _offer_state(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase")
        if (obj.get("status") or {}).get("answerRefused"):
            self._answer_refused(obj)
        if phase in GONE_OFFER_PHASES:
            self._rescind(name)
            return
        if spec.get("answer") or phase not in (None, OfferPhase.OUTSTANDING):
            return  # answered (by us, possibly in an earlier process) or being processed
        with self._lock:
            if name in self._answered or name in self._outstanding or name in self._gone:
                return
            try:
                offer = Offer.from_object(obj)
            except ValidationError as e:
                log.error("offer %s does not parse: %s", name, e)
                return
            self._outstanding[name] = offer
        if not self._batch:
            self._batch_deadline = time.monotonic() + self.offer_batch_window
        self._batch.append(offer)
        self.stats.offers_received += 1

    def _rescind(self, offer_id: str) -> None:
        with self._lock:
            if offer_id in self._answered:
                return
            self._gone.add(offer_id)
            offer = self._outstanding.pop(offer_id, None)
        if offer is None:
            return
        pending = [o for o in self._batch if o.id != offer_id]
        if len(pending) != len(self._batch):
            self._batch = pending  # never delivered: nothing to tell the scheduler
            return
        self._flush_batch()  # offers that arrived before this rescind are delivered first
        self.stats.offers_rescinded += 1
        self._callback("offer_rescinded", self.scheduler.offer_rescinded, self, offer_id)

    def _flush_batch(self) -> None:
        if not self._batch or not self._registered:
            return
        batch, self._batch = self._batch, []
        try:
            self.scheduler.resource_offers(self, batch)
        except Exception:
            # Do not hoard what the scheduler failed to answer: decline it (default filter).
            with self._lock:
                left = [o.id for o in batch if o.id in self._outstanding]
            log.exception("resource_offers raised; declining its %d unanswered offers", len(left))
            for oid in left:
                self.decline(oid)

    # tasks -------------------------------------------------------------

    def _on_task(self, event_type: str, obj: Any) -> None:
        if event_type == "SYNC":
            obj = [o for o in obj if not self._is_rolled_back(o, False)]
            names = {o["metadata"]["name"] for o in obj}
            for name in [n for n in self._task_states if n not in names]:
                self._task_vanished(name)
            for o in obj:
                self._task_state(o)
            return
        if self._is_rolled_back(obj, event_type == "DELETED"):
            return
        if event_type == "DELETED":
            self._task_state(obj)  # a last state the watch may not have shown yet
            self._task_vanished(obj["metadata"]["name"])
            return
        self._task_state(obj)

    def _is_rolled_back(self, obj: dict[str, Any], deleted: bool) -> bool:
        """A Task an accept created and deleted again (create_tasks): the scheduler has the
        driver's TASK_ERROR or TASK_LOST for it, not its STAGING and its deletion."""
        with self._lock:
            if not self._rolled_back:
                return False
            uid = obj["metadata"].get("uid")
            if uid not in self._rolled_back:
                return False
            if deleted:
                self._rolled_back.discard(uid)
            return True

    def _task_state(self, obj: dict[str, Any]) -> None:
        try:
            status = TaskStatus.from_task(obj)
        except ValidationError as e:
            log.error("task %s status does not parse: %s", obj["metadata"]["name"], e)
            return
        self._deliver_status(status)

    def _task_vanished(self, name: str) -> None:
        last = self._task_states.pop(name, None)
        if last is not None and last not in TERMINAL_TASK_STATES:
            self._deliver_status(
                TaskStatus(
                    task_id=name,
                    state=TaskState.LOST,
                    reason="REASON_TASK_UNKNOWN",
                    message="the Task object was deleted before a terminal state",
                    source=StatusSource.DRIVER,
                ),
                force=True,
            )
            self._task_states.pop(name, None)  # forget it: the object is gone

    def _deliver_status(self, status: TaskStatus, force: bool = False) -> None:
        last = self._task_states.get(status.task_id)
        if not force and last == status.state:
            return
        if last in TERMINAL_TASK_STATES and status.source is StatusSource.DRIVER:
            return  # the master's terminal state stands
        self._task_states[status.task_id] = status.state
        self.stats.status_updates += 1
        self._callback("status_update", self.scheduler.status_update, self, status)


def _api_message(e: ApiException) -> str:
    try:
        return json.loads(e.body or "{}").get("message") or str(e.reason)
    except (ValueError, AttributeError):
        return str(e.reason)
