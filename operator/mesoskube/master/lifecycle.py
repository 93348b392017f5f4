"""Framework lifecycle: subscribe, heartbeat Leases, revive, reconcile, failover and TEARDOWN.

A part with declared dependencies: the writer, the cache (read), the settings, its work queue,
the refusal filters (revive and teardown clear a framework's), the other parts' verbs it
uses (rescind offers, kill a task, request an allocation), and framework liveness (liveness.py) with
the monotonic clock it counts on: a Lease lapses by the master's observed time, never by comparing
the framework's renewTime with the master's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from mesoskube.api.models import DEFAULT_ROLE, FrameworkPhase, TaskState
from mesoskube.master import FINALIZER
from mesoskube.master.cache import Cache, format_time, parse_time
from mesoskube.master.events import EventRecorder
from mesoskube.master.liveness import LeaseLiveness, Liveness
from mesoskube.master.objects import is_terminal, ns_name
from mesoskube.master.workqueue import WorkQueue
from mesoskube.master.writer import ApiError, Writer
from mesoskube.settings import Settings

log = logging.getLogger("mesoskube.master")

LEASE_POLL_INTERVAL = 1.0


class TeardownDeferred(Exception):
    """An accept of the framework is still being worked (engine.py): its Tasks may not all be in
    the cache yet, and a TEARDOWN now could miss them. The framework's key comes back with backoff."""


@dataclass
class FrameworkLifecycle:
    writer: Writer
    cache: Cache
    settings: Settings
    events: EventRecorder
    queue: WorkQueue
    filters: dict  # the allocation part's refusal filters, shared
    rescind_offers: Callable[..., int]
    # TEARDOWN's offers: (namespace, framework, why) -> how many went (offers.py)
    remove_framework_offers: Callable[[str, str, str], int]
    resync_tasks: Callable[[Iterable[str]], None]  # the task queue: their sync kills them (tasksync.py)
    request_allocation: Callable[..., None]  # (agents=None, prompt=False)
    run_all: Callable[[Callable, Iterable], list]
    liveness: LeaseLiveness  # framework heartbeats, judged by the master's observed time
    monotonic: Callable[[], float]  # the clock liveness counts on, never compared with timestamps
    # Whether an accept of the framework is in flight (pipelined engine): TEARDOWN waits for it.
    accepts_in_flight: Callable[[str], bool] = lambda _key: False
    lease_pool: Executor | None = None  # the Lease LIST off the loop's thread (poll_leases)
    _lease_poll: tuple[float, Future] | None = None  # (sent at, its answer to come)
    wake: Callable[[], None] = lambda: None  # the engine's loop
    last_lease_poll: float = 0.0
    seen_generation: dict[str, int | None] = field(default_factory=dict)

    def poll_leases(self, force: bool = False) -> None:
        """Framework heartbeats. Polled with a server-side label filter: watching every Lease would
        also stream each node's heartbeat. With a `lease_pool` the LIST runs there and its answer
        is taken on a later step: on a loaded API server it took up to a second, and the engine's
        loop (which hands answers out) waited for it once a second. Liveness still decides on the
        loop's thread, from the time the LIST was sent (its answer is at least that new)."""
        now = self.monotonic()
        if self.lease_pool is not None and not force:
            self._take_lease_poll()
            if self._lease_poll is not None or now - self.last_lease_poll < LEASE_POLL_INTERVAL:
                return
            self.last_lease_poll = now
            ns = self.settings.namespace or None
            try:
                future = self.lease_pool.submit(self.writer.list_framework_leases, ns)
            except RuntimeError:  # the pool is shut down: the master is stopping
                return
            self._lease_poll = (now, future)
            future.add_done_callback(lambda _f: self.wake())  # its answer is taken on the next step
            return
        if not force and now - self.last_lease_poll < LEASE_POLL_INTERVAL:
            return
        self.last_lease_poll = now
        try:
            leases = self.writer.list_framework_leases(self.settings.namespace or None)
        except Exception as e:
            self._lease_poll_failed(e, now)
            return
        self._observe_leases(leases, now)

    def _take_lease_poll(self) -> None:
        if self._lease_poll is None or not self._lease_poll[1].done():
            return
        sent, future = self._lease_poll
        self._lease_poll = None
        try:
            leases = future.result()
        except Exception as e:
            self._lease_poll_failed(e, sent)
            return
        self._observe_leases(leases, sent)

    def _lease_poll_failed(self, e: BaseException, now: float) -> None:
        """The API server is away: that is no framework's fault (liveness.py)."""
        if self.liveness.healthy:
            what = f"{e.status} {e.reason}" if isinstance(e, ApiError) else f"{type(e).__name__}: {e}"
            log.warning("framework Leases unreadable (%s): liveness paused until they are", what)
        self.liveness.poll_failed(now)

    def _observe_leases(self, leases: dict[str, dict], now: float) -> None:
        seen = {k: (lease["renew"], lease["version"], lease["duration"]) for k, lease in leases.items()}
        changed = self.liveness.observe(seen, now)
        # Lapses happen without any change; a framework with a Lease is looked at on every poll.
        with self.cache.lock:
            keys = [k for k in self.cache.frameworks if k in seen or k in changed]
        for k in keys:
            self.queue.add(k)

    def reconcile_frameworks(self, now: float) -> None:
        # Failover clocks run whether or not anything changed.
        with self.cache.lock:
            disconnected = [
                k
                for k, fw in self.cache.frameworks.items()
                if (fw.get("status") or {}).get("phase") == FrameworkPhase.DISCONNECTED.value
            ]
        for k in disconnected:
            if self.queue.failures(k) == 0:  # one in backoff waits for its turn
                self.queue.add(k)

        def work(key: str) -> None:
            with self.cache.lock:
                fw = self.cache.frameworks.get(key)
            if fw is None:
                self.seen_generation.pop(key, None)
                return
            try:
                self.reconcile_framework(key, fw, now)
            except ApiError as e:
                if e.status == 409:  # a stale resourceVersion: look again with the newer object
                    self.queue.add(key)
                elif e.status != 404:
                    raise

        # In order, on this thread: a framework's steps write its own status, one after another.
        for key in list(self.queue.drain()):
            try:
                work(key)
            except TeardownDeferred as e:
                log.debug("framework %s: teardown after its accepts in flight", key)
                self.queue.done(key, e)
            except Exception as e:
                log.warning("framework %s: %s (retrying)", key, e)
                self.queue.done(key, e)
            else:
                self.queue.done(key)

    def reconcile_framework(self, key: str, fw: dict, now: float) -> None:
        ns, name = ns_name(key)
        meta, spec, status = fw["metadata"], fw.get("spec") or {}, fw.get("status") or {}
        phase = status.get("phase")
        if meta.get("deletionTimestamp"):
            self.teardown(key, fw, "framework deleted (TEARDOWN)")
            if FINALIZER in (meta.get("finalizers") or []):
                self.writer.patch(
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
            self.seen_generation[key] = meta.get("generation")
            if FINALIZER not in (meta.get("finalizers") or []):
                self.writer.patch(
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
            self.request_allocation(None, prompt=True)
            return
        if phase == FrameworkPhase.TORN_DOWN.value:
            return
        liveness = self.liveness.state(key, self.monotonic())
        if liveness is Liveness.UNKNOWN:
            return  # the master cannot see the API server well enough to judge anyone
        lapsed = liveness is Liveness.LAPSED
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
                self.request_allocation(None, prompt=True)
                return
            since = parse_time(status.get("disconnectedAt")) or now
            if now - since >= float(spec.get("failoverTimeoutSeconds") or 0):
                if self.accepts_in_flight(key):
                    raise TeardownDeferred(key)
                # TORN_DOWN first: it is the record the kills are read from (before the tasks
                # are synced, and by a master that takes over before they are all killed).
                self._patch_fw_status(key, {"phase": FrameworkPhase.TORN_DOWN.value})
                self.teardown(key, fw, "failover timeout expired")
                self.events.warning(
                    fw, "TornDown", "failover timeout expired: tasks killed, offers rescinded"
                )
            return
        revive = int(spec.get("revive") or 0)
        if revive != int(status.get("observedRevive") or 0):
            for k in [k for k in self.filters if k[0] == key]:
                del self.filters[k]
            self._patch_fw_status(key, {"observedRevive": revive})
            self.request_allocation(None, prompt=True)
        reconcile = spec.get("reconcile")
        if reconcile and reconcile.get("id") != status.get("observedReconcile"):
            self._patch_fw_status(
                key,
                {
                    "reconciled": self.reconcile_answer(ns, name, reconcile.get("taskIds")),
                    "observedReconcile": reconcile.get("id"),
                },
            )
        # A spec change (suppress lifted, roles changed) may make agents offerable to it; the
        # master's own status writes and heartbeats change nothing an allocation reads.
        generation = meta.get("generation")
        if self.seen_generation.get(key) != generation:
            self.seen_generation[key] = generation
            if not spec.get("suppress"):
                self.request_allocation(None, prompt=True)

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
        if self.accepts_in_flight(key):
            raise TeardownDeferred(key)
        ns, name = ns_name(key)
        self.remove_framework_offers(ns, name, why)
        with self.cache.lock:
            tasks = [
                k
                for k, t in self.cache.tasks.items()
                if k.startswith(ns + "/") and t["spec"]["framework"] == name and not is_terminal(t)
            ]
        # Killed by their sync, off this thread: a framework removed (deleted, or TORN_DOWN) is
        # read from the stored Framework (TaskSync.kill_wanted), so nothing is written per task here.
        self.resync_tasks(tasks)
        for k in [k for k in self.filters if k[0] == key]:
            del self.filters[k]

    def _patch_fw_status(self, key: str, patch: dict) -> None:
        ns, name = ns_name(key)
        body = self.writer.patch_status("frameworks", ns, name, {"status": patch})
        self.cache.upsert("frameworks", body)
