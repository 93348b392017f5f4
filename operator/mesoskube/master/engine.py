"""The master's engine: one thread that turns the cache into API writes.

Each step: framework lifecycle (subscribe, revive, reconcile, failover, teardown), answered offers
(accept -> Tasks and Pods, decline -> filters), task status from pods, offer rescinds and expiry,
then an allocation when one is due (interval or coalesced trigger). Every write fans out to a small
thread pool; the allocator itself is pure and runs on a snapshot.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType

from kubernetes.client.exceptions import ApiException

from mesoskube import metrics
from mesoskube.allocator import allocate, dominant_share
from mesoskube.allocator.snapshot import (
    Agent,
    AllocatorConfig,
    Filter,
    FrameworkView,
    OfferDecision,
    RolePolicy,
    Snapshot,
)
from mesoskube.api.models import (
    DEFAULT_ROLE,
    TERMINAL_TASK_STATES,
    AnswerType,
    FrameworkPhase,
    OfferAnswer,
    OfferPhase,
    TaskState,
)
from mesoskube.kube import Kube
from mesoskube.master import FINALIZER, LABEL_FRAMEWORK, LABEL_TASK
from mesoskube.master.builders import offer_manifest, pod_manifest, task_manifest
from mesoskube.master.cache import Cache, format_time, key_of, parse_time
from mesoskube.master.events import EventRecorder
from mesoskube.master.selector import parse_selector
from mesoskube.master.taskstate import TaskUpdate, for_missing_pod, from_pod
from mesoskube.master.validation import check_accept
from mesoskube.resources import SCALARS, Resources, subtract_ranges
from mesoskube.settings import Settings

log = logging.getLogger("mesoskube.master")
STATUS_INTERVAL = 2.0
LEASE_POLL_INTERVAL = 1.0
MIN_ALLOCATION_GAP = 0.05
STALE_DECLINE_MARK = 60.0
# Declined and still outstanding: a decline of a rescinded or expired offer was refused and stays
# visible for offerRetention like its offer.
SWEEP_SELECTOR = (
    f"spec.answer.type={AnswerType.DECLINE.value},"
    f"status.phase!={OfferPhase.RESCINDED.value},status.phase!={OfferPhase.EXPIRED.value}"
)


def _ns_name(key: str) -> tuple[str, str]:
    ns, _, name = key.partition("/")
    return ns, name


def _fw_key(ns: str, name: str) -> str:
    return f"{ns}/{name}"


def task_state(task: dict) -> TaskState | None:
    raw = (task.get("status") or {}).get("state")
    return TaskState(raw) if raw else None


def is_terminal(task: dict) -> bool:
    return task_state(task) in TERMINAL_TASK_STATES


def offer_phase(offer: dict) -> str:
    return (offer.get("status") or {}).get("phase") or OfferPhase.OUTSTANDING.value


@dataclass
class Engine:
    kube: Kube
    settings: Settings
    cache: Cache
    clock: Callable[[], float] = time.time
    workers: int = 16

    wake: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    # (framework, agent) -> (until, refused resources); in memory only, as in Mesos (lost on failover)
    filters: dict[tuple[str, str], tuple[float, Resources | None]] = field(default_factory=dict)
    dirty_tasks: set[str] = field(default_factory=set)
    dirty_frameworks: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    # Declines are deleted in bulk: which were processed (and when), which namespaces to sweep, and
    # declines a sweep removed before they were processed.
    processed_declines: dict[str, float] = field(default_factory=dict)
    sweep: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # namespace -> offer keys
    bulk_delete: bool = True  # off when the API server or RBAC refuses the field-selected delete
    late_declines: list[dict] = field(default_factory=list)
    accepted_at: dict[str, float] = field(default_factory=dict)
    killing: set[str] = field(default_factory=set)
    launched: set[str] = field(default_factory=set)  # tasks whose pod was created or seen
    allocation_requested: bool = True
    last_allocation: float = 0.0
    last_lease_poll: float = 0.0
    published: dict[str, dict] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="mesoskube-write")
        self.events = EventRecorder(self.kube, self.pool)
        self.agent_matches = parse_selector(self.settings.agentSelector)
        self.allocator_config = AllocatorConfig(
            min_allocatable=self.settings.min_allocatable_resources(),
            sorter=self.settings.sorter,
            seed=self.settings.seed,
            max_offers_per_framework=self.settings.maxOffersPerFramework,
        )
        self.port_ranges = self.settings.port_ranges()
        self.dirty_lock = threading.Lock()
        self._totals: dict[str, tuple] = {}

    # ------------------------------------------------------------------ signals from handlers

    def mark_task(self, key: str) -> None:
        with self.dirty_lock:
            self.dirty_tasks.add(key)
        self.wake.set()

    def mark_framework(self, key: str) -> None:
        with self.dirty_lock:
            self.dirty_frameworks.add(key)
        self.wake.set()

    def mark_answered(self, key: str) -> None:
        with self.dirty_lock:
            self.answered.add(key)
        self.wake.set()

    def agent_removed(self, agent: str) -> None:
        """Tasks on a removed node are LOST; their pods are deleted (no kubelet will ever report them)."""
        with self.cache.lock:
            keys = [
                k for k, t in self.cache.tasks.items() if t["spec"]["agent"] == agent and not is_terminal(t)
            ]
        with self.dirty_lock:
            self.dirty_tasks.update(keys)
        self.request_allocation()

    def request_allocation(self) -> None:
        self.allocation_requested = True
        self.wake.set()

    # ------------------------------------------------------------------ loop

    def seed(self) -> None:
        """LIST everything once before the first allocation, so a restarted master never offers
        resources that are already offered or launched."""
        ns = self.settings.namespace or None
        for node in self.kube.api.sanitize_for_serialization(self.kube.core.list_node())["items"]:
            self.cache.upsert_node(node)
        pods = self.kube.api.sanitize_for_serialization(self.kube.core.list_pod_for_all_namespaces())
        for pod in pods["items"]:
            ours = LABEL_TASK in (pod["metadata"].get("labels") or {})
            self.cache.upsert_pod(pod, ours=ours)
        for store in ("frameworks", "offers", "tasks"):
            for obj in self.kube.list(store, ns):
                self.cache.upsert(store, obj)
        for obj in self.kube.custom.list_cluster_custom_object("mesoskube.io", "v1alpha1", "mesosroles")[
            "items"
        ]:
            self.cache.upsert("roles", obj)
        with self.cache.lock:
            self.dirty_tasks.update(self.cache.tasks)
            self.dirty_frameworks.update(self.cache.frameworks)
            self.answered.update(k for k, o in self.cache.offers.items() if o["spec"].get("answer"))
        self.poll_leases(force=True)
        self.ready.set()

    def run(self) -> None:
        self.seed()
        while not self.stopping.is_set():
            now = self.clock()
            next_allocation = self.last_allocation + self.settings.allocationInterval - now
            self.wake.wait(timeout=max(0.0, min(next_allocation, STATUS_INTERVAL)))
            self.wake.clear()
            if self.stopping.is_set():
                break
            try:
                self.step()
            except Exception:  # a bad object or a failed write must not stop the master
                log.exception("engine step failed; retrying next step")
                time.sleep(0.2)
        self.pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def step(self) -> None:
        now = self.clock()
        self.poll_leases()
        self.reconcile_frameworks(now)
        self.process_answers(now)
        self.sync_tasks(now)
        self.housekeep_offers(now)
        due = now - self.last_allocation >= self.settings.allocationInterval
        if due or (self.allocation_requested and now - self.last_allocation >= MIN_ALLOCATION_GAP):
            self.allocate(now)

    def run_status(self) -> None:
        """Status, metrics and task retention on their own clock: a long engine step (a large accept
        at a low client QPS) must not freeze what `kubectl get frameworks` and dashboards show."""
        self.ready.wait()
        while not self.stopping.wait(STATUS_INTERVAL):
            try:
                self.publish_status(self.clock())
            except Exception:
                if self.stopping.is_set():  # the write pool shuts down with the engine
                    return
                log.exception("publishing status failed; retrying in %.0fs", STATUS_INTERVAL)

    def _run_all(self, fn: Callable, items: Iterable) -> list:
        return list(self.pool.map(fn, items))

    # ------------------------------------------------------------------ frameworks

    def poll_leases(self, force: bool = False) -> None:
        """Framework heartbeats. Polled with a server-side label filter: watching every Lease would
        also stream each node's heartbeat."""
        now = time.monotonic()
        if not force and now - self.last_lease_poll < LEASE_POLL_INTERVAL:
            return
        self.last_lease_poll = now
        sel = LABEL_FRAMEWORK
        if self.settings.namespace:
            leases = self.kube.coordination.list_namespaced_lease(self.settings.namespace, label_selector=sel)
        else:
            leases = self.kube.coordination.list_lease_for_all_namespaces(label_selector=sel)
        seen = {}
        for lease in leases.items:
            renew = lease.spec.renew_time
            seen[f"{lease.metadata.namespace}/{lease.metadata.name}"] = {
                "renew": renew.timestamp() if renew else 0.0,
                "duration": float(lease.spec.lease_duration_seconds or 15),
            }
        with self.cache.lock:
            self.cache.leases = seen
            self.dirty_frameworks.update(k for k in self.cache.frameworks if k in seen or k in self.published)

    def reconcile_frameworks(self, now: float) -> None:
        with self.dirty_lock:
            keys, self.dirty_frameworks = self.dirty_frameworks, set()
        # Failover clocks run whether or not anything changed.
        with self.cache.lock:
            keys |= {
                k
                for k, fw in self.cache.frameworks.items()
                if (fw.get("status") or {}).get("phase") == FrameworkPhase.DISCONNECTED.value
            }
            items = [(k, self.cache.frameworks.get(k)) for k in keys]
        for key, fw in items:
            if fw is not None:
                try:
                    self.reconcile_framework(key, fw, now)
                except ApiException as e:
                    if e.status not in (404, 409):
                        raise

    def reconcile_framework(self, key: str, fw: dict, now: float) -> None:
        ns, name = _ns_name(key)
        meta, spec, status = fw["metadata"], fw.get("spec") or {}, fw.get("status") or {}
        phase = status.get("phase")
        if meta.get("deletionTimestamp"):
            self.teardown(key, fw, "framework deleted (TEARDOWN)")
            if FINALIZER in (meta.get("finalizers") or []):
                self.kube.patch(
                    "frameworks",
                    ns,
                    name,
                    {
                        "metadata": {
                            "finalizers": [f for f in meta["finalizers"] if f != FINALIZER],
                            "resourceVersion": meta["resourceVersion"],
                        }
                    },
                )
            return
        if phase is None:
            if FINALIZER not in (meta.get("finalizers") or []):
                self.kube.patch(
                    "frameworks",
                    ns,
                    name,
                    {"metadata": {"finalizers": [*(meta.get("finalizers") or []), FINALIZER]}},
                )
            self._patch_fw_status(
                key,
                {
                    "phase": FrameworkPhase.SUBSCRIBED.value,
                    "frameworkId": meta["uid"],
                    "subscribedAt": format_time(now),
                    "observedRevive": spec.get("revive", 0),
                },
            )
            self.events.normal(
                fw,
                "Subscribed",
                f"framework {name} subscribed with roles {', '.join(spec.get('roles') or [DEFAULT_ROLE])}",
            )
            self.request_allocation()
            return
        if phase == FrameworkPhase.TORN_DOWN.value:
            return
        lease = self.cache.leases.get(key)
        lapsed = lease is not None and lease["renew"] + lease["duration"] < now
        if phase == FrameworkPhase.SUBSCRIBED.value and lapsed:
            self._patch_fw_status(
                key, {"phase": FrameworkPhase.DISCONNECTED.value, "disconnectedAt": format_time(now)}
            )
            self.rescind_offers(
                lambda o: o["spec"]["framework"] == name and o["metadata"]["namespace"] == ns,
                "REASON_FRAMEWORK_DISCONNECTED",
                "the framework's heartbeat Lease lapsed",
            )
            self.events.warning(
                fw,
                "Disconnected",
                f"heartbeat Lease lapsed; failover timeout {spec.get('failoverTimeoutSeconds', 0)}s started",
            )
            return
        if phase == FrameworkPhase.DISCONNECTED.value:
            if not lapsed:
                self._patch_fw_status(key, {"phase": FrameworkPhase.SUBSCRIBED.value, "disconnectedAt": None})
                self.events.normal(fw, "Reregistered", "heartbeat resumed within the failover timeout")
                self.request_allocation()
                return
            since = parse_time(status.get("disconnectedAt")) or now
            if now - since >= float(spec.get("failoverTimeoutSeconds") or 0):
                self.teardown(key, fw, "failover timeout expired")
                self._patch_fw_status(key, {"phase": FrameworkPhase.TORN_DOWN.value})
                self.events.warning(
                    fw, "TornDown", "failover timeout expired: tasks killed, offers rescinded"
                )
            return
        revive = int(spec.get("revive") or 0)
        if revive != int(status.get("observedRevive") or 0):
            for k in [k for k in self.filters if k[0] == key]:
                del self.filters[k]
            self._patch_fw_status(key, {"observedRevive": revive})
            self.request_allocation()
        reconcile = spec.get("reconcile")
        if reconcile and reconcile.get("id") != status.get("observedReconcile"):
            self._patch_fw_status(
                key,
                {
                    "reconciled": self.reconcile_answer(ns, name, reconcile.get("taskIds")),
                    "observedReconcile": reconcile.get("id"),
                },
            )
        if not spec.get("suppress"):
            self.request_allocation()

    def reconcile_answer(self, ns: str, framework: str, task_ids: list[str] | None) -> list[dict]:
        with self.cache.lock:
            mine = {
                k.split("/", 1)[1]: t
                for k, t in self.cache.tasks.items()
                if k.startswith(ns + "/") and t["spec"]["framework"] == framework
            }
        if not task_ids:  # implicit: every non-terminal task
            return [
                {"taskId": n, "state": (t.get("status") or {}).get("state") or TaskState.STAGING.value}
                for n, t in sorted(mine.items())
                if not is_terminal(t)
            ]
        out = []
        for tid in task_ids:
            t = mine.get(tid)
            if t is None:
                out.append({"taskId": tid, "state": TaskState.LOST.value, "reason": "REASON_RECONCILIATION"})
            else:
                out.append({"taskId": tid, "state": (t.get("status") or {}).get("state") or "TASK_STAGING"})
        return out

    def teardown(self, key: str, fw: dict, why: str) -> None:
        ns, name = _ns_name(key)
        self.rescind_offers(
            lambda o: o["spec"]["framework"] == name and o["metadata"]["namespace"] == ns,
            "REASON_FRAMEWORK_REMOVED",
            why,
        )
        with self.cache.lock:
            tasks = [
                t
                for k, t in self.cache.tasks.items()
                if k.startswith(ns + "/") and t["spec"]["framework"] == name and not is_terminal(t)
            ]
        self._run_all(lambda t: self._kill(t), tasks)
        for k in [k for k in self.filters if k[0] == key]:
            del self.filters[k]

    def _patch_fw_status(self, key: str, patch: dict) -> None:
        ns, name = _ns_name(key)
        body = self.kube.patch_status("frameworks", ns, name, {"status": patch})
        self.cache.upsert("frameworks", body)

    # ------------------------------------------------------------------ answers

    def process_answers(self, now: float) -> None:
        with self.dirty_lock:
            keys, self.answered = self.answered, set()
        with self.cache.lock:
            offers = [(k, self.cache.offers[k]) for k in keys if k in self.cache.offers]
        # Accepts first: launching is what frameworks wait for; a decline only returns resources.
        offers.sort(key=lambda kv: (kv[1]["spec"].get("answer") or {}).get("type") != AnswerType.ACCEPT.value)
        self._run_all(lambda kv: self._answer(kv[0], kv[1], now), offers)
        self.sweep_declined_offers()

    def sweep_declined_offers(self) -> None:
        """Delete every declined offer of a namespace with one request (a field selector on the
        answer). It may catch declines this step has not processed yet: their DELETED events come
        back through `offer_deleted`, which applies their filters before the next snapshot."""
        now = self.clock()
        with self.dirty_lock:
            sweep, self.sweep = self.sweep, defaultdict(set)
            # A DELETED event that overtook the processing leaves its mark behind: forget it later.
            for key in [k for k, t in self.processed_declines.items() if now - t > STALE_DECLINE_MARK]:
                del self.processed_declines[key]
        for ns, keys in sweep.items():
            if self.bulk_delete:
                try:
                    self.kube.delete_collection("offers", ns, SWEEP_SELECTOR)
                    continue
                except ApiException as e:
                    if e.status not in (400, 403, 404, 405):
                        log.warning("deleting declined offers in %s failed: %s", ns, e.reason)
                        with self.dirty_lock:
                            self.sweep[ns] |= keys
                        continue
                    # Kubernetes < 1.31 has no field selectors on custom resources; an older RBAC
                    # role may lack deletecollection. Delete one by one from now on.
                    log.warning("bulk delete of declined offers refused (%s); deleting one by one", e.reason)
                    self.bulk_delete = False
            self._run_all(lambda k: self._delete_quietly("offers", *_ns_name(k)), keys)

    def offer_deleted(self, key: str, body: dict) -> None:
        """Called by the watch handler before the offer leaves the cache. A decline removed by a
        sweep before this master processed it still sets its filter (else its agent would be
        offered right back); accepts are never swept, so they cannot be lost this way."""
        answer = body["spec"].get("answer") or {}
        with self.dirty_lock:
            if self.processed_declines.pop(key, None) is not None:
                return
            if (
                answer.get("type") == AnswerType.DECLINE.value
                and offer_phase(body) == OfferPhase.OUTSTANDING.value
            ):
                self.late_declines.append(body)
                self.answered.discard(key)

    def _apply_late_declines(self, now: float) -> None:
        with self.dirty_lock:
            late, self.late_declines = self.late_declines, []
        for offer in late:
            spec = offer["spec"]
            fw_key = _fw_key(offer["metadata"]["namespace"], spec["framework"])
            answer = OfferAnswer.model_validate(spec["answer"])
            refuse = answer.filters.refuseSeconds if answer.filters else self._default_refuse(fw_key)
            metrics.offers.labels(event="declined").inc()
            self._filter(fw_key, spec["agent"], now + refuse, Resources.from_mapping(spec["resources"]))

    def _answer(self, key: str, offer: dict, now: float) -> None:
        try:
            self.handle_answer(key, offer, now)
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("answer to offer %s failed: %s", key, e.reason)
                self.mark_answered(key)

    def handle_answer(self, key: str, offer: dict, now: float) -> None:
        ns, name = _ns_name(key)
        spec, status = offer["spec"], offer.get("status") or {}
        answer = OfferAnswer.model_validate(spec["answer"])
        phase = offer_phase(offer)
        if phase != OfferPhase.OUTSTANDING.value:
            if not status.get("answerRefused"):
                msg = (
                    f"answer refused: the offer was {phase.lower()} before it was answered "
                    f"({status.get('reason') or 'no reason'}); wait for a new offer"
                )
                self.kube.patch_status(
                    "offers", ns, name, {"status": {"answerRefused": True, "message": msg}}
                )
                self.events.warning(offer, "AnswerRefused", msg)
            return
        fw_key = _fw_key(ns, spec["framework"])
        created = parse_time(offer["metadata"].get("creationTimestamp"))
        if created:
            metrics.offer_decision.observe(max(0.0, now - created))
        with self.cache.lock:
            fw = self.cache.frameworks.get(fw_key)
        refuse = answer.filters.refuseSeconds if answer.filters else self._default_refuse(fw_key)
        if answer.type == AnswerType.DECLINE:
            metrics.offers.labels(event="declined").inc()
            self._filter(fw_key, spec["agent"], now + refuse, Resources.from_mapping(spec["resources"]))
            # Declined offers go in bulk (one DELETE per namespace per step): with one framework
            # declining most of a large cluster, deleting them one by one dominated the write budget.
            with self.dirty_lock:
                self.processed_declines[key] = now
                self.sweep[ns].add(key)
            with self.cache.lock:
                self.cache.offers.pop(key, None)
            self.request_allocation()
            return
        metrics.offers.labels(event="accepted").inc()
        used = self.launch(offer, answer, fw, now)
        leftover = Resources.from_mapping(spec["resources"]) - used
        if any(leftover.contains(m) for m in self.allocator_config.min_allocatable):
            self._filter(fw_key, spec["agent"], now + refuse, leftover)
        self._delete_quietly("offers", ns, name)
        with self.cache.lock:
            self.cache.offers.pop(key, None)
        self.request_allocation()

    def _default_refuse(self, fw_key: str) -> float:
        with self.cache.lock:
            fw = self.cache.frameworks.get(fw_key) or {}
        defaults = (fw.get("spec") or {}).get("defaultFilters") or {}
        return float(defaults.get("refuseSeconds", self.settings.defaultRefuseSeconds))

    def _filter(self, fw_key: str, agent: str, until: float, refused: Resources) -> None:
        if until > self.clock():
            self.filters[(fw_key, agent)] = (until, refused)

    def launch(self, offer: dict, answer: OfferAnswer, fw: dict | None, now: float) -> Resources:
        """Create the accept's Tasks (then their Pods via sync_tasks); all or nothing."""
        ns, spec = offer["metadata"]["namespace"], offer["spec"]
        offer_name = offer["metadata"]["name"]
        if fw is None:
            return Resources()
        with self.cache.lock:
            existing = {k.split("/", 1)[1]: t for k, t in self.cache.tasks.items() if k.startswith(ns + "/")}
        # A restarted master may see an accept it half-processed: its own tasks are not conflicts.
        already = {n for n, t in existing.items() if t["spec"].get("offer") == offer_name}
        todo = [t for t in answer.tasks if t.name not in already]
        verdict = check_accept(
            Resources.from_mapping(spec["resources"]), answer.tasks, set(existing) - already
        )
        fw_uid = fw["metadata"]["uid"]
        if not verdict.ok:
            self.events.warning(fw, "TaskError", f"accept of offer {offer_name} refused: {verdict.message}")
            for t in todo:
                self._error_task(ns, t, spec, fw_uid, offer_name, verdict.message)
            return Resources()

        def create(task) -> None:
            body = self._create_task(ns, task, spec, fw_uid, offer_name)
            k = key_of(body)
            self.accepted_at[k] = now
            self.cache.upsert("tasks", body)
            # The pod follows its Task at once: waiting for the next step would queue every pod of a
            # large accept behind every Task of it.
            self._sync_task(k, body, now)

        # Already on a pool worker: launching through the pool again could deadlock it.
        for t in todo:
            create(t)
        return verdict.used

    def _create_task(self, ns: str, task, spec: dict, fw_uid: str, offer_name: str) -> dict:
        role = spec.get("role") or DEFAULT_ROLE
        manifest = task_manifest(task, spec["framework"], fw_uid, role, spec["agent"], offer_name)
        return self.kube.create("tasks", ns, manifest)

    def _error_task(self, ns: str, task, spec: dict, fw_uid: str, offer_name: str, message: str) -> None:
        try:
            self._create_task(ns, task, spec, fw_uid, offer_name)
        except ApiException as e:
            if e.status != 409:
                raise
            return
        body = self.kube.patch_status(
            "tasks",
            ns,
            task.name,
            {
                "status": {
                    "state": TaskState.ERROR.value,
                    "reason": "REASON_TASK_INVALID",
                    "message": message,
                    "finishedAt": format_time(self.clock()),
                }
            },
        )
        self.cache.upsert("tasks", body)
        self.events.warning(body, TaskState.ERROR.value, f"REASON_TASK_INVALID: {message}")

    # ------------------------------------------------------------------ tasks

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
        ns, name = _ns_name(key)
        task = self.cache.tasks.get(key) or task  # the newest we hold: work may wait in the pool
        spec, status = task["spec"], task.get("status") or {}
        state = task_state(task)
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
        ns, name = _ns_name(key)
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

    # ------------------------------------------------------------------ offers

    def rescind_offers(
        self,
        which: Callable[[dict], bool],
        reason: str,
        message: str,
        phase: OfferPhase = OfferPhase.RESCINDED,
    ) -> int:
        with self.cache.lock:
            victims = [
                o
                for o in self.cache.offers.values()
                if offer_phase(o) == OfferPhase.OUTSTANDING.value and not o["spec"].get("answer") and which(o)
            ]
        now = format_time(self.clock())

        def rescind(o: dict) -> None:
            ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
            try:
                body = self.kube.patch_status(
                    "offers",
                    ns,
                    name,
                    {"status": {"phase": phase.value, "reason": reason, "message": message, "closedAt": now}},
                )
            except ApiException as e:
                if e.status == 404:
                    return
                raise
            self.cache.upsert("offers", body)
            metrics.offers.labels(event="expired" if phase == OfferPhase.EXPIRED else "rescinded").inc()

        self._run_all(rescind, victims)
        if victims:
            self.request_allocation()
            if reason != "REASON_FRAMEWORK_REMOVED":  # nobody is left to read it
                self._record_closed_offers(victims, phase, reason, message)
        return len(victims)

    def _record_closed_offers(self, offers: list[dict], phase: OfferPhase, reason: str, message: str) -> None:
        """One Event per framework and cause, not one per offer: a node going away can close an offer
        of every framework at once, and a restart of many nodes thousands; the Offers themselves
        carry the details on their status."""
        by_framework: dict[str, list[str]] = defaultdict(list)
        for o in offers:
            by_framework[_fw_key(o["metadata"]["namespace"], o["spec"]["framework"])].append(
                o["spec"]["agent"]
            )
        verb = "expired" if phase == OfferPhase.EXPIRED else "rescinded"
        for key, agents in by_framework.items():
            with self.cache.lock:
                fw = self.cache.frameworks.get(key)
            if fw is None:
                continue
            shown = ", ".join(sorted(agents)[:5]) + (
                f" and {len(agents) - 5} more" if len(agents) > 5 else ""
            )
            plural = "s" if len(agents) != 1 else ""
            summary = f"{len(agents)} offer{plural} {verb} ({reason}: {message}) on {shown}"
            self.events.normal(fw, f"Offers{verb.capitalize()}", summary)

    def housekeep_offers(self, now: float) -> None:
        with self.cache.lock:
            nodes = dict(self.cache.nodes)
            frameworks = dict(self.cache.frameworks)

        def agent_gone(o: dict) -> bool:
            node = nodes.get(o["spec"]["agent"])
            return node is None or not node.offerable or not self.agent_matches(node.labels)

        def framework_gone(o: dict) -> bool:
            fw = frameworks.get(_fw_key(o["metadata"]["namespace"], o["spec"]["framework"]))
            return fw is None or (fw.get("status") or {}).get("phase") != FrameworkPhase.SUBSCRIBED.value

        def expired(o: dict) -> bool:
            t = parse_time(o["spec"].get("expiresAt"))
            return t is not None and t <= now

        self.rescind_offers(agent_gone, "REASON_AGENT_REMOVED", "the agent is gone, not Ready or cordoned")
        self.rescind_offers(
            framework_gone, "REASON_FRAMEWORK_REMOVED", "the framework is no longer subscribed"
        )
        self.rescind_offers(
            expired, "REASON_OFFER_TIMEOUT", "offerTimeout passed without an answer", OfferPhase.EXPIRED
        )
        self.rescind_overcommitted(nodes)
        # Closed offers stay visible for offerRetention, then go.
        with self.cache.lock:
            old = [
                o
                for o in self.cache.offers.values()
                if offer_phase(o) != OfferPhase.OUTSTANDING.value
                and (parse_time((o.get("status") or {}).get("closedAt")) or now)
                + self.settings.offerRetention
                <= now
            ]
        for o in old:
            self._delete_quietly("offers", o["metadata"]["namespace"], o["metadata"]["name"])
            with self.cache.lock:
                self.cache.offers.pop(key_of(o), None)

    def rescind_overcommitted(self, nodes: dict) -> None:
        """Offers whose agent was taken by others (pods the master did not launch) are rescinded."""
        by_agent: dict[str, list[dict]] = defaultdict(list)
        with self.cache.lock:
            for o in self.cache.offers.values():
                if offer_phase(o) == OfferPhase.OUTSTANDING.value and not o["spec"].get("answer"):
                    by_agent[o["spec"]["agent"]].append(o)
            pending = self._pending_by_agent() if by_agent else {}
            usage = {
                a: self.cache.node_usage.get(a, Resources()) + pending.get(a, Resources()) for a in by_agent
            }
        victims: set[str] = set()
        for agent, offers in by_agent.items():
            node = nodes.get(agent)
            if node is None:
                continue
            free = node.allocatable - usage[agent]
            offered = Resources.total(resources_of(o) for o in offers)
            for o in sorted(offers, key=lambda o: o["metadata"].get("creationTimestamp") or "", reverse=True):
                if all(getattr(free, n) + 1e-9 >= getattr(offered, n) for n in SCALARS):
                    break
                victims.add(key_of(o))
                offered = offered - resources_of(o)
        if victims:
            self.rescind_offers(
                lambda o: key_of(o) in victims,
                "REASON_RESOURCES_TAKEN",
                "another pod took this agent's resources",
            )

    def _pending_by_agent(self) -> dict[str, Resources]:
        """Per agent, non-terminal tasks whose pod the cache has not seen yet (must hold the lock)."""
        pending: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        for k, t in self.cache.tasks.items():
            if k not in self.cache.pods and not is_terminal(t):
                _add(pending[t["spec"]["agent"]], resources_of(t))
        return {agent: Resources(*v) for agent, v in pending.items()}

    # ------------------------------------------------------------------ allocation

    def snapshot(self, now: float) -> Snapshot:
        # The hot path of every cycle: parsed resources are memoised on the cached bodies, and sums
        # are kept as plain floats, building one Resources per agent rather than one per addition.
        with self.cache.lock:
            nodes = [n for n in self.cache.nodes.values() if n.offerable and self.agent_matches(n.labels)]
            held: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
            held_ports: dict[str, list] = defaultdict(list)
            alloc: dict[str, dict[str, list[float]]] = defaultdict(
                lambda: defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
            )
            pods = self.cache.pods
            for k, t in self.cache.tasks.items():
                if is_terminal(t):
                    continue
                r = resources_of(t)
                spec = t["spec"]
                _add(
                    alloc[_fw_key(t["metadata"]["namespace"], spec["framework"])][
                        spec.get("role") or DEFAULT_ROLE
                    ],
                    r,
                )
                if k not in pods:
                    _add(held[spec["agent"]], r)
            outstanding: dict[str, int] = defaultdict(int)
            for o in self.cache.offers.values():
                if offer_phase(o) != OfferPhase.OUTSTANDING.value:
                    continue
                r = resources_of(o)
                spec = o["spec"]
                outstanding[_fw_key(o["metadata"]["namespace"], spec["framework"])] += 1
                _add(held[spec["agent"]], r)
                if r.ports:
                    held_ports[spec["agent"]].extend(r.ports)
                _add(
                    alloc[_fw_key(o["metadata"]["namespace"], spec["framework"])][
                        spec.get("role") or DEFAULT_ROLE
                    ],
                    r,
                )
            agents = []
            none = Resources()
            for n in nodes:
                used = self.cache.node_usage.get(n.name, none)
                a, h = n.allocatable, held.get(n.name, (0.0, 0.0, 0.0, 0.0))
                taken_ports = used.ports + tuple(held_ports.get(n.name, ()))
                total = self._agent_total(n)
                available = Resources(
                    a.cpus - used.cpus - h[0] if a.cpus > used.cpus + h[0] else 0.0,
                    a.mem - used.mem - h[1] if a.mem > used.mem + h[1] else 0.0,
                    a.disk - used.disk - h[2] if a.disk > used.disk + h[2] else 0.0,
                    a.gpus - used.gpus - h[3] if a.gpus > used.gpus + h[3] else 0.0,
                    subtract_ranges(self.port_ranges, taken_ports) if taken_ports else self.port_ranges,
                )
                agents.append(Agent(n.name, total, available, MappingProxyType(n.labels)))
            allocated = {
                fw: {role: Resources(*v) for role, v in roles.items()} for fw, roles in alloc.items()
            }
            frameworks = []
            for k, fw in self.cache.frameworks.items():
                st, sp = fw.get("status") or {}, fw.get("spec") or {}
                if st.get("phase") != FrameworkPhase.SUBSCRIBED.value or fw["metadata"].get(
                    "deletionTimestamp"
                ):
                    continue
                roles = tuple(sp.get("roles") or [DEFAULT_ROLE])
                frameworks.append(
                    FrameworkView(
                        key=k,
                        roles=roles,
                        suppressed_roles=frozenset(roles) if sp.get("suppress") else frozenset(),
                        allocated=MappingProxyType(allocated.get(k, {})),
                        outstanding_offers=outstanding.get(k, 0),
                    )
                )
            roles = {name: _role_policy(name, body) for name, body in self.cache.roles.items()}
        # After the cache was read: a decline swept away unprocessed was queued before its offer
        # left the cache, so either its resources were still held above or its filter is here.
        self._apply_late_declines(now)
        filters = tuple(
            Filter(fw, agent, until, refused)
            for (fw, agent), (until, refused) in self.filters.items()
            if until > now
        )
        return Snapshot(
            agents=tuple(agents), frameworks=tuple(frameworks), roles=MappingProxyType(roles), filters=filters
        )

    def _agent_total(self, node) -> Resources:
        cached = self._totals.get(node.name)
        if cached is None or cached[0] is not node:
            a = node.allocatable
            cached = self._totals[node.name] = (
                node,
                Resources(a.cpus, a.mem, a.disk, a.gpus, self.port_ranges),
            )
        return cached[1]

    def allocate(self, now: float) -> None:
        started = time.perf_counter()
        self.allocation_requested = False
        self.last_allocation = now
        self.filters = {k: v for k, v in self.filters.items() if v[0] > now}
        snap = self.snapshot(now)
        t0 = time.perf_counter()
        decisions = allocate(snap, now, self.allocator_config)
        metrics.allocator_duration.observe(time.perf_counter() - t0)
        if decisions:
            with self.cache.lock:
                fws = {k: self.cache.frameworks.get(k) for k in {d.framework for d in decisions}}
                labels = {a.name: dict(a.attributes) for a in snap.agents}
            expires = format_time(now + self.settings.offerTimeout) if self.settings.offerTimeout else None
            self._run_all(
                lambda d: self._send_offer(d, fws.get(d.framework), labels.get(d.agent, {}), expires),
                decisions,
            )
        metrics.allocation_runs.inc()
        metrics.allocation_duration.observe(time.perf_counter() - started)
        metrics.agents.set(len(snap.agents))

    def _send_offer(self, d: OfferDecision, fw: dict | None, attributes: dict, expires: str | None) -> None:
        if fw is None:
            return
        ns, name = _ns_name(d.framework)
        body = offer_manifest(name, fw["metadata"]["uid"], d.role, d.agent, d.resources, attributes, expires)
        body["metadata"]["namespace"] = ns
        try:
            created = self.kube.create("offers", ns, body)
        except ApiException as e:
            log.warning("offer for %s on %s not created: %s", d.framework, d.agent, e.reason)
            return
        created.setdefault("status", {})
        self.cache.upsert("offers", created)
        metrics.offers.labels(event="sent").inc()

    # ------------------------------------------------------------------ status

    def publish_status(self, now: float) -> None:
        with self.cache.lock:
            frameworks = dict(self.cache.frameworks)
            tasks = list(self.cache.tasks.values())
            offers = list(self.cache.offers.values())
            roles = dict(self.cache.roles)
            nodes = [n for n in self.cache.nodes.values() if n.offerable and self.agent_matches(n.labels)]
        total = Resources.total(n.allocatable for n in nodes)
        per_fw: dict[str, Resources] = defaultdict(Resources)
        per_role: dict[str, Resources] = defaultdict(Resources)
        fw_roles: dict[str, set[str]] = defaultdict(set)
        counts: dict[str, dict[str, int]] = defaultdict(lambda: {"offers": 0, "tasks": 0})
        states: dict[str, int] = defaultdict(int)
        for t in tasks:
            states[(t.get("status") or {}).get("state") or TaskState.STAGING.value] += 1
            if is_terminal(t):
                continue
            k = _fw_key(t["metadata"]["namespace"], t["spec"]["framework"])
            r = resources_of(t)
            per_fw[k] += r
            per_role[t["spec"].get("role") or DEFAULT_ROLE] += r
            counts[k]["tasks"] += 1
        for o in offers:
            # An answered offer is on its way out: what it launched is counted with the tasks.
            if offer_phase(o) != OfferPhase.OUTSTANDING.value or o["spec"].get("answer"):
                continue
            k = _fw_key(o["metadata"]["namespace"], o["spec"]["framework"])
            r = resources_of(o)
            r = Resources(r.cpus, r.mem, r.disk, r.gpus)
            per_fw[k] += r
            per_role[o["spec"].get("role") or DEFAULT_ROLE] += r
            counts[k]["offers"] += 1
        for state in TaskState:
            metrics.tasks.labels(state=state.value).set(states.get(state.value, 0))
        writes = []
        for k, fw in frameworks.items():
            for role in (fw.get("spec") or {}).get("roles") or [DEFAULT_ROLE]:
                fw_roles[role].add(k)
            if (fw.get("status") or {}).get("phase") is None or fw["metadata"].get("deletionTimestamp"):
                continue
            r = per_fw.get(k, Resources())
            share = round(dominant_share(r, total), 4)
            metrics.framework_share.labels(framework=k).set(share)
            for res in SCALARS:
                metrics.framework_allocated.labels(framework=k, resource=res).set(getattr(r, res))
            want = {
                "offers": counts[k]["offers"],
                "tasks": counts[k]["tasks"],
                "allocated": {n: v for n, v in r.scalars().items()},
                "dominantShare": share,
            }
            have = {x: (fw.get("status") or {}).get(x) for x in want}
            if have != want:
                writes.append(("frameworks", k, want))
        for name, body in roles.items():
            r = per_role.get(name, Resources())
            weight = float((body.get("spec") or {}).get("weight") or 1.0)
            share = round(dominant_share(r, total) / weight, 4)
            metrics.role_share.labels(role=name).set(share)
            for res in SCALARS:
                metrics.role_allocated.labels(role=name, resource=res).set(getattr(r, res))
            want = {
                "allocated": r.scalars(),
                "dominantShare": share,
                "frameworks": len(fw_roles.get(name, ())),
            }
            have = {x: (body.get("status") or {}).get(x) for x in want}
            if have != want:
                writes.append(("roles", name, want))
        self._run_all(self._write_status, writes)
        self.prune_completed_tasks(tasks)

    def prune_completed_tasks(self, tasks: list[dict]) -> None:
        """Keep at most maxCompletedTasksPerFramework terminal Tasks per framework (Mesos keeps 1000)."""
        keep = self.settings.maxCompletedTasksPerFramework
        done: dict[str, list[dict]] = defaultdict(list)
        for t in tasks:
            if is_terminal(t):
                done[_fw_key(t["metadata"]["namespace"], t["spec"]["framework"])].append(t)
        old = []
        for finished in done.values():
            if len(finished) > keep:
                finished.sort(key=lambda t: (t.get("status") or {}).get("finishedAt") or "")
                old.extend(finished[: len(finished) - keep])
        self._run_all(
            lambda t: self._delete_quietly("tasks", t["metadata"]["namespace"], t["metadata"]["name"]), old
        )

    def _write_status(self, item: tuple[str, str, dict]) -> None:
        store, key, status = item
        try:
            if store == "roles":
                body = self.kube.custom.patch_cluster_custom_object_status(
                    "mesoskube.io", "v1alpha1", "mesosroles", key, {"status": status}
                )
            else:
                ns, name = _ns_name(key)
                body = self.kube.patch_status("frameworks", ns, name, {"status": status})
            self.cache.upsert(store, body)
        except ApiException as e:
            if e.status != 404:
                log.warning("status of %s %s not written: %s", store, key, e.reason)

    # ------------------------------------------------------------------ helpers

    def _delete_quietly(self, plural: str, ns: str, name: str) -> None:
        try:
            self.kube.delete(plural, ns, name)
        except ApiException as e:
            if e.status != 404:
                raise

    def _delete_quietly_pod(self, ns: str, name: str) -> None:
        try:
            self.kube.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                raise


def resources_of(body: dict) -> Resources:
    """An Offer's or Task's spec.resources, parsed once per object version (the body is replaced
    on every update, so the memo can never go stale)."""
    memo = body.get(_RESOURCES_MEMO)
    if memo is None:
        memo = body[_RESOURCES_MEMO] = Resources.from_mapping(body["spec"]["resources"])
    return memo


_RESOURCES_MEMO = "__mesoskube_resources"


def _add(acc: list[float], r: Resources) -> None:
    acc[0] += r.cpus
    acc[1] += r.mem
    acc[2] += r.disk
    acc[3] += r.gpus


def _role_policy(name: str, body: dict) -> RolePolicy:
    spec = body.get("spec") or {}
    quota = spec.get("quota")
    limit = None
    if quota:
        limit = Resources(**{n: float(quota[n]) if quota.get(n) is not None else math.inf for n in SCALARS})
    return RolePolicy(name=name, weight=float(spec.get("weight") or 1.0), quota_limit=limit)
