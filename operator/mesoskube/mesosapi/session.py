"""One HTTP framework: the SDK's SchedulerDriver for its Framework object, and its event stream.

The driver does what any mesoskube framework does (Lease + Framework, Offer answers, kills,
revive/suppress, reconcile, teardown); this class is its `Scheduler`, turning callbacks into
Mesos events on the subscriber's stream, and the calls of that subscriber into driver calls.
Callbacks run on the driver's event thread; events reach the stream's asyncio queue through
`loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from mesoskube.api.models import Capability
from mesoskube.frameworks.sdk import Scheduler, SchedulerDriver
from mesoskube.frameworks.sdk.driver import micro_time
from mesoskube.frameworks.sdk.types import Offer, StatusSource, TaskStatus
from mesoskube.kube import Kube
from mesoskube.mesosapi import protocol as p
from mesoskube.mesosapi.state import (
    ANNOTATION_HOSTNAME,
    ANNOTATION_NAME,
    ANNOTATION_PRINCIPAL,
    ANNOTATION_WEBUI,
)

log = logging.getLogger("mesoskube.mesosapi")

# Mesos agents retry an unacknowledged update after 10 s, doubling up to 10 min.
UPDATE_RETRY_SECONDS = 10.0
UPDATE_RETRY_MAX_SECONDS = 600.0
EXECUTOR_STATES = {"TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED"}


class Stream:
    """One SUBSCRIBE connection: records queued for the response writer; None closes it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protobuf: bool = False) -> None:
        self.id = str(uuid.uuid4())
        self.loop = loop
        self.protobuf = protobuf
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    def send(self, event: dict[str, Any]) -> None:
        """From any thread."""
        data = p.record(event, self.protobuf)
        self.loop.call_soon_threadsafe(self._put, data)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._put, None)

    def _put(self, item: bytes | None) -> None:
        if not self.closed:
            self.queue.put_nowait(item)
            if item is None:
                self.closed = True


@dataclass
class Pending:
    event: dict[str, Any]
    task_id: str
    state: str
    due: float
    backoff: float = UPDATE_RETRY_SECONDS


@dataclass
class Session(Scheduler):
    kube: Kube
    namespace: str
    name: str  # the Framework object's name = the Mesos FrameworkID
    info: dict[str, Any]
    master_info: dict[str, Any]
    default_image: str
    principal: str = ""  # the authenticated subscriber (empty without authentication)
    stream: Stream | None = None
    driver: SchedulerDriver | None = None
    registered_once: bool = False
    removed: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    pending: dict[bytes, Pending] = field(default_factory=dict)
    acked: dict[str, str] = field(default_factory=dict)  # mesos task id -> last acknowledged state
    offers: dict[str, Offer] = field(default_factory=dict)  # delivered, not answered
    task_ids: dict[str, str] = field(default_factory=dict)  # object name -> mesos task id
    task_agents: dict[str, str] = field(default_factory=dict)  # mesos task id -> agent
    executors: dict[str, set[str]] = field(default_factory=dict)  # executor object name -> task names

    # ------------------------------------------------------------------ subscribe / streams

    @property
    def partition_aware(self) -> bool:
        return "PARTITION_AWARE" in p.framework_capabilities(self.info)

    def attach(self, stream: Stream) -> Stream | None:
        """Make `stream` the framework's one connection; returns the one it replaces."""
        with self.lock:
            old, self.stream = self.stream, stream
            if self.running and self.registered_once:
                self._greet(stream)
        return old

    def _greet(self, stream: Stream) -> None:
        """SUBSCRIBED, then what the new subscriber must know: outstanding offers, unacked updates."""
        stream.send(p.subscribed(self.name, self.master_info))
        stream.send(p.heartbeat())
        if self.offers:
            stream.send(p.offers([self._offer_json(o) for o in self.offers.values()]))
        now = time.monotonic()
        for pend in self.pending.values():
            stream.send(pend.event)
            pend.due = now + pend.backoff
        stream.send(p.heartbeat())

    @property
    def running(self) -> bool:
        d = self.driver
        return d is not None and d.status.value in ("DRIVER_NOT_STARTED", "DRIVER_RUNNING")

    def start_driver(self) -> None:
        """Blocking: Lease and Framework writes (the SDK's SUBSCRIBE). Two SUBSCRIBEs racing start
        one driver; a driver that failed to start is dropped so the next SUBSCRIBE tries again."""
        info = self.info
        driver = SchedulerDriver(
            self,
            self.name,
            self.namespace,
            roles=p.framework_roles(info),
            kube=self.kube,
            failover_timeout=min(float(info.get("failover_timeout") or 0), 31536000),
            capabilities=[Capability(c) for c in p.framework_capabilities(info)],
            user=str(info.get("user") or "")[:128] or None,
        )
        with self.lock:
            if self.running:
                return
            self.driver = driver
        try:
            driver.start()
        except Exception:
            with self.lock:
                if self.driver is driver:
                    self.driver = None
            raise
        ann = {
            ANNOTATION_NAME: str(info.get("name") or ""),
            ANNOTATION_PRINCIPAL: str(info.get("principal") or ""),
            ANNOTATION_HOSTNAME: str(info.get("hostname") or ""),
            ANNOTATION_WEBUI: str(info.get("webui_url") or ""),
        }
        try:
            self.kube.patch("frameworks", self.namespace, self.name, {"metadata": {"annotations": ann}})
        except ApiException as e:
            log.warning("framework %s: annotating its Mesos name failed: HTTP %s", self.name, e.status)

    def detach(self, stream: Stream) -> bool:
        """The subscriber's connection dropped: stop heartbeating so the failover timeout starts.
        Returns False when another SUBSCRIBE took over the framework (nothing to do)."""
        with self.lock:
            if self.stream is not stream:
                return False
            self.stream = None
            driver, self.driver = self.driver, None
            self.registered_once = False  # the next driver's registration greets the next subscriber
        if driver is not None:
            driver.abort()
            self._expire_lease()
        return True

    def _expire_lease(self) -> None:
        """Mesos notices a closed stream at once; here the master notices a lapsed Lease. The master
        judges Leases by when it observed their last change (never by the renewTime's value), so
        release it as client-go does: a 1 s duration lapses one second after the master sees this
        write, instead of a whole lease duration (the next SUBSCRIBE's driver sets it back)."""
        past = micro_time(time.time() - 3600)
        try:
            self.kube.coordination.patch_namespaced_lease(
                self.name,
                self.namespace,
                {"spec": {"renewTime": past, "acquireTime": past, "leaseDurationSeconds": 1}},
                _content_type="application/merge-patch+json",
            )
        except ApiException as e:
            if e.status != 404:
                log.warning("framework %s: expiring its Lease failed: HTTP %s", self.name, e.status)

    def teardown(self) -> None:
        with self.lock:
            driver, self.driver = self.driver, None
            stream, self.stream = self.stream, None
            self.removed = True
        if driver is not None:
            driver.stop()
        if stream is not None:
            stream.close()

    # ------------------------------------------------------------------ driver callbacks

    def registered(self, driver: SchedulerDriver, framework_id: str) -> None:
        with self.lock:
            if driver is not self.driver:
                return
            self.registered_once = True
            if self.stream is not None:
                self._greet(self.stream)

    def error(self, driver: SchedulerDriver, message: str) -> None:
        with self.lock:
            if driver is not self.driver:
                return
            stream = self.stream
            self.removed = "removed" in message
        if stream is not None:
            stream.send(p.error(message))
            stream.close()

    def _offer_json(self, o: Offer) -> dict[str, Any]:
        return p.offer_json(o.id, self.name, o.agent_id, o.role, o.resources, o.attributes)

    def resource_offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        with self.lock:
            for o in offers:
                self.offers[o.id] = o
            stream = self.stream
        if stream is not None and offers:
            stream.send(p.offers([self._offer_json(o) for o in offers]))
            stream.send(p.heartbeat())

    def offer_rescinded(self, driver: SchedulerDriver, offer_id: str) -> None:
        with self.lock:
            self.offers.pop(offer_id, None)
            stream = self.stream
        if stream is not None:
            stream.send(p.rescind(offer_id))
            stream.send(p.heartbeat())

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        reconciled = status.reason == "REASON_RECONCILIATION"
        if status.state.value == "TASK_STAGING" and not reconciled:
            return  # Mesos sends no update for a task still staging (only reconciliation says it)
        mesos_id = (
            status.labels.get(p.LABEL_MESOS_TASK_ID) or self.task_ids.get(status.task_id) or status.task_id
        )
        self.post(
            mesos_id,
            status.state.value,
            agent=status.agent_id,
            reason=status.reason,
            message=status.message,
            executor=status.executor_id,
            source=status.source,
            reliable=not reconciled,
        )

    def post(
        self,
        task_id: str,
        state: str,
        *,
        agent: str | None = None,
        reason: str | None = None,
        message: str | None = None,
        executor: str | None = None,
        source: StatusSource | str = StatusSource.MASTER,
        reliable: bool = True,
    ) -> None:
        """An UPDATE event; reliable ones carry a uuid and are re-sent until acknowledged."""
        with self.lock:
            if reliable and self.acked.get(task_id) == state:
                return  # a new driver re-reading a state this subscriber already acknowledged
            agent = agent or self.task_agents.get(task_id) or "unknown"
            src = (
                "SOURCE_EXECUTOR"
                if state in EXECUTOR_STATES and source == StatusSource.MASTER
                else "SOURCE_MASTER"
            )
            raw = uuid.uuid4().bytes if reliable else None
            event = p.update(
                task_id,
                state,
                agent_id=agent,
                source=src,
                timestamp=time.time(),
                reason=reason,
                message=message,
                executor_id=executor,
                uuid_bytes=raw,
            )
            if raw is not None:
                # A newer state supersedes an unacknowledged older one of the same task.
                for k in [k for k, v in self.pending.items() if v.task_id == task_id]:
                    del self.pending[k]
                self.pending[raw] = Pending(event, task_id, state, time.monotonic() + UPDATE_RETRY_SECONDS)
            stream = self.stream
        if stream is not None:
            stream.send(event)
            stream.send(p.heartbeat())

    def retry_due(self, now: float) -> None:
        with self.lock:
            stream = self.stream
            if stream is None:
                return
            for pend in self.pending.values():
                if pend.due <= now:
                    stream.send(pend.event)
                    pend.backoff = min(pend.backoff * 2, UPDATE_RETRY_MAX_SECONDS)
                    pend.due = now + pend.backoff

    # ------------------------------------------------------------------ calls (blocking; run off the loop)

    def call(self, call: dict[str, Any]) -> int:
        """Carry out one validated call; returns the HTTP status (202, or 200 for UPDATE_FRAMEWORK)."""
        kind = call["type"]
        driver = self.driver
        if kind == "TEARDOWN":
            self.teardown()
            return 202
        if driver is None:
            raise p.CallError(403, "Framework is not subscribed")
        handler = getattr(self, f"_call_{kind.lower()}", None)
        if handler is None:
            # MESSAGE, REQUEST, inverse offers, operation feedback: mesoskube has no executors to
            # message, no maintenance windows and no operations beyond launches.
            log.info("framework %s: %s accepted and ignored (not modelled by mesoskube)", self.name, kind)
            return 202
        return handler(driver, call) or 202

    def _call_accept(self, driver: SchedulerDriver, call: dict[str, Any]) -> None:
        accept = call["accept"]
        offer_ids = [p.value_of(o) for o in accept.get("offer_ids") or []]
        refuse = (accept.get("filters") or {}).get("refuse_seconds")
        refuse = float(refuse) if refuse is not None else None
        infos, unsupported = p.launch_tasks(accept.get("operations") or [])
        self._drop_operations(unsupported)
        # Translate first: a garbled call (TypeError and the like: a 400) leaves the offers untouched.
        converted: list[tuple[str, dict[str, Any] | str]] = []
        for info in infos:
            mesos_id = p.value_of(info.get("task_id")) or "?"
            try:
                converted.append(p.task_of(info, self.default_image))
            except p.TaskInfoError as e:
                converted.append((mesos_id, str(e)))
        with self.lock:
            valid = [oid for oid in offer_ids if oid in self.offers]
            popped = [self.offers.pop(oid) for oid in valid]
        agent = popped[0].agent_id if popped else None
        tasks: list[dict[str, Any]] = []
        for mesos_id, task in converted:
            if isinstance(task, str):
                self.post(mesos_id, "TASK_ERROR", agent=agent, reason="REASON_TASK_INVALID", message=task)
                continue
            with self.lock:
                self.task_ids[task["name"]] = mesos_id
                self.task_agents[mesos_id] = agent or ""
                if task.get("executor"):
                    self.executors.setdefault(task["executor"], set()).add(task["name"])
            tasks.append(task)
        if not valid:
            state = "TASK_DROPPED" if self.partition_aware else "TASK_LOST"
            for t in tasks:
                self.post(
                    self.task_ids[t["name"]],
                    state,
                    agent=agent,
                    reason="REASON_INVALID_OFFERS",
                    message=f"Offers {offer_ids} are not outstanding offers of this framework",
                )
            return
        filters = {"refuseSeconds": refuse} if refuse is not None else None
        try:
            if tasks:
                driver.accept(valid[0], tasks, filters=filters)
            else:
                driver.decline(valid[0], refuse_seconds=refuse)
        except ValidationError as e:
            msg = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            for t in tasks:
                self.post(
                    self.task_ids[t["name"]],
                    "TASK_ERROR",
                    agent=agent,
                    reason="REASON_TASK_INVALID",
                    message=msg,
                )
            driver.decline(valid[0], refuse_seconds=refuse)
        for oid in valid[1:]:  # one Offer carries the launch; the others' resources go back
            driver.decline(oid, refuse_seconds=refuse)

    def _drop_operations(self, operations: list[dict[str, Any]]) -> None:
        """As Mesos drops an invalid operation: a warning, and OPERATION_ERROR to a framework that
        gave the operation an id."""
        for op in operations:
            message = p.operation_refusal(op)
            log.warning("framework %s: dropping %s operation: %s", self.name, op.get("type"), message)
            op_id = p.value_of(op.get("id"))
            with self.lock:
                stream = self.stream
            if op_id and stream is not None:
                stream.send(p.operation_error(op_id, message))
                stream.send(p.heartbeat())

    def _call_decline(self, driver: SchedulerDriver, call: dict[str, Any]) -> None:
        decline = call["decline"]
        refuse = (decline.get("filters") or {}).get("refuse_seconds")
        for o in decline.get("offer_ids") or []:
            oid = p.value_of(o)
            with self.lock:
                known = self.offers.pop(oid, None) is not None
            if known:
                driver.decline(oid, refuse_seconds=refuse)

    def _call_revive(self, driver: SchedulerDriver, call: dict[str, Any]) -> None:
        driver.revive()  # per-role revive is framework-wide here: filters are per framework

    def _call_suppress(self, driver: SchedulerDriver, call: dict[str, Any]) -> None:
        driver.suppress()

    def _call_kill(self, driver: SchedulerDriver, call: dict[str, Any]) -> None:
        task_id = p.value_of(call["kill"].get("task_id")) or ""
        driver.kill_task(p.object_name(task_id))

    def _call_shutdown(self, driver: SchedulerDriver, call: dict[str, Any]) -> None:
        executor = p.value_of(call["shutdown"].get("executor_id")) or ""
        with self.lock:
            names = sorted(self.executors.get(p.object_name(executor, "e"), ()))
        for n in names:
            driver.kill_task(n)

    def _call_acknowledge(self, driver: SchedulerDriver, call: dict[str, Any]) -> None:
        raw = base64.b64decode(call["acknowledge"]["uuid"])
        with self.lock:
            pend = self.pending.pop(raw, None)
            if pend is not None:
                self.acked[pend.task_id] = pend.state

    def _call_reconcile(self, driver: SchedulerDriver, call: dict[str, Any]) -> None:
        ids = [p.value_of(t.get("task_id")) or "" for t in call["reconcile"].get("tasks") or []]
        driver.reconcile_tasks([p.object_name(i) for i in ids if i])

    def _call_update_framework(self, driver: SchedulerDriver, call: dict[str, Any]) -> int:
        info = call["update_framework"]["framework_info"]
        spec = {
            "roles": p.framework_roles(info),
            "failoverTimeoutSeconds": min(float(info.get("failover_timeout") or 0), 31536000),
            "capabilities": p.framework_capabilities(info),
        }
        try:
            self.kube.patch("frameworks", self.namespace, self.name, {"spec": spec})
        except ApiException as e:
            raise p.CallError(400, f"Failed to update framework: {_message(e)}") from None
        with self.lock:
            self.info = {**self.info, **info}
        return 200


def _message(e: ApiException) -> str:
    import json

    try:
        return json.loads(e.body or "{}").get("message") or str(e.reason)
    except ValueError:
        return str(e.reason)
