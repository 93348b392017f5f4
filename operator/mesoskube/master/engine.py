"""The master's engine: one thread that turns the cache into API writes.

Each step: framework lifecycle (subscribe, revive, reconcile, failover, teardown: lifecycle.py),
answered offers (accept -> Tasks and Pods, decline -> filters: answers.py), task status from pods
(tasksync.py), offer rescinds and expiry (offers.py), then an allocation when one is due (interval
or coalesced trigger: allocation.py). Status and metrics are published on a second thread
(status.py). Every write fans out to a small thread pool; the allocator itself is pure and runs on
an immutable snapshot. This module holds the state those parts share, the signals the watch
handlers send, and the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kubernetes.client.exceptions import ApiException

from mesoskube.allocator.snapshot import AllocatorConfig
from mesoskube.kube import Kube
from mesoskube.master.adoption import PodAdoption
from mesoskube.master.allocation import AllocationCycle
from mesoskube.master.answers import AnswerHandling
from mesoskube.master.cache import Cache
from mesoskube.master.events import EventRecorder
from mesoskube.master.lifecycle import FrameworkLifecycle
from mesoskube.master.liveness import LeaseLiveness
from mesoskube.master.objects import is_task_pod, is_terminal
from mesoskube.master.offers import OfferHousekeeping
from mesoskube.master.selector import parse_selector
from mesoskube.master.status import STATUS_INTERVAL, StatusPublisher
from mesoskube.master.tasksync import TaskSync
from mesoskube.resources import Resources
from mesoskube.settings import Settings

log = logging.getLogger("mesoskube.master")
MIN_ALLOCATION_GAP = 0.05


@dataclass
class Engine(
    FrameworkLifecycle,
    AnswerHandling,
    TaskSync,
    PodAdoption,
    OfferHousekeeping,
    AllocationCycle,
    StatusPublisher,
):
    kube: Kube
    settings: Settings
    cache: Cache
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic  # durations (framework liveness), never timestamps
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
    heartbeat: float = field(default_factory=time.monotonic)
    liveness: LeaseLiveness = field(default_factory=LeaseLiveness)  # framework heartbeats, master's clock
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
            self.cache.upsert_pod(pod, ours=is_task_pod(pod, self.settings.schedulerName))
        for store in ("frameworks", "offers", "tasks"):
            for obj in self.kube.list(store, ns):
                self.cache.upsert(store, obj)
        for obj in self.kube.custom.list_cluster_custom_object("mesoskube.io", "v1alpha1", "mesosroles")[
            "items"
        ]:
            self.cache.upsert("roles", obj)
        self.mark_all()
        self.poll_leases(force=True)
        self.ready.set()

    def mark_all(self) -> None:
        """Look at every task, framework and answered offer on the next step (after the seed, and when a
        standby that kept its cache warm takes over)."""
        with self.cache.lock:
            tasks, frameworks = list(self.cache.tasks), list(self.cache.frameworks)
            answered = [k for k, o in self.cache.offers.items() if o["spec"].get("answer")]
        with self.dirty_lock:
            self.dirty_tasks.update(tasks)
            self.dirty_frameworks.update(frameworks)
            self.answered.update(answered)
        self.request_allocation()

    def run(self) -> None:
        self.seed()
        self.loop()

    def loop(self) -> None:
        """The steps, until stop(); `heartbeat` (monotonic) marks each turn for the liveness probe."""
        while not self.stopping.is_set():
            self.heartbeat = time.monotonic()
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

    def _run_all(self, fn: Callable, items: Iterable) -> list:
        return list(self.pool.map(fn, items))

    # ------------------------------------------------------------------ helpers for the parts

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
