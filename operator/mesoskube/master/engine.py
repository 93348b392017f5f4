"""The master's engine: one loop that turns work queues and the cache into API writes, and the
composition root of its parts. Each part is a class with declared dependencies (the Writer, the
cache, the clock, the settings, its work queue, the verbs of other parts it uses), built here.

The watch handlers only put keys on work queues (workqueue.py, client-go's contract) and mark
agents as allocation candidates. Each step drains the ready keys of each queue: frameworks
(lifecycle.py), answered offers (accept -> Tasks and Pods, decline -> filters: answers.py), tasks
(state from pods, pod creation, kills, agent health: tasksync.py); then offer housekeeping
(offers.py) and, when due, the allocation pipeline (allocation.py). A key whose work raised
anything comes back after a per-key backoff; none is dropped.

Answers and tasks are pipelined (issue 14, steady-load latency): the step hands each ready key to
the work pool and goes on, so an answer arriving while earlier launches still wait for the API
server starts at once instead of after the step's slowest write, and no phase waits for another's.
The work queue keeps one worker per key (a key in flight is not handed out again; an add meanwhile
re-queues it when its work ends). Framework work stays in order on the loop's thread; a TEARDOWN
waits (deferred with backoff) until no accept of that framework is in flight, so it sees every Task
the accept created. Status and metrics are published on a
second thread (status.py). Every write goes through one Writer (writer.py), fanned out to a small
thread pool; the allocator itself is pure and runs on an immutable snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

from mesoskube.allocator.snapshot import AllocatorConfig
from mesoskube.master import trace
from mesoskube.master.allocation import AllocationCycle
from mesoskube.master.answers import AnswerHandling
from mesoskube.master.cache import Cache
from mesoskube.master.contract import Provenance, made_by_master
from mesoskube.master.events import EventRecorder
from mesoskube.master.fairqueue import FairQueue
from mesoskube.master.health import AgentHealth
from mesoskube.master.lifecycle import FrameworkLifecycle
from mesoskube.master.liveness import LeaseLiveness
from mesoskube.master.objects import is_task_pod, is_terminal
from mesoskube.master.offers import OfferHousekeeping
from mesoskube.master.relist import GhostSweep
from mesoskube.master.selector import parse_selector
from mesoskube.master.status import STATUS_INTERVAL, StatusPublisher
from mesoskube.master.tasksync import TaskSync
from mesoskube.master.workqueue import WorkQueue
from mesoskube.master.writer import ApiError, Writer
from mesoskube.resources import Resources
from mesoskube.settings import Settings

log = logging.getLogger("mesoskube.master")
MIN_ALLOCATION_GAP = 0.05
# Pipelined, a step comes at every watch event (it only hands keys out), so the parts of a step that
# walk the whole cluster run at most this often: the event-triggered allocation cycle (its snapshot
# walks every agent), agent health and offer housekeeping. Measured at a steady load on 1,000 nodes
# (bench/results/latency.md): ~1,000 steps a minute, and the master at 0.30 of a core against 0.20
# before the pipelining, on a machine whose API server and kwok wait for CPU.
PIPELINED_SWEEP_GAP = 0.2
# Watched by the runner's reflectors (nodes, pods) and kopf (handlers.register, the rest).
WATCHED_KINDS = ("nodes", "pods", "frameworks", "offers", "tasks", "mesosroles")


@dataclass
class Engine:
    writer: Writer
    settings: Settings
    cache: Cache
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic  # durations (framework liveness), never timestamps
    # 0 runs every write inline on the engine's thread (unit tests: deterministic order).
    workers: int = 16
    # Task status patches on their own pool, off the step (statuswrites.py). Off by default: on the
    # loaded 2-core machine a back-to-back pair measured it slower (7.9 vs 11.6 tasks/s at 1,000
    # nodes, bench/results/scale-before-after.json), the status writes then competing with pod
    # creates for the API server's CPU instead of waiting behind them.
    status_off_step: bool = False
    # Answers and tasks handed to this pool, the step not waiting for them (module docstring). By
    # default its own pool when workers > 0; None with workers=0 (work inline, in step order).
    work_pool: Executor | None = None
    # Answers get workers of their own: an accept never waits for a worker behind task work (a
    # Task status patch waits for its client's token, behind the Offer writes, for up to 2 s). At
    # 1,000 nodes and QPS 50 the 16 shared workers were all such patches and each answer waited
    # 2.6 s (p50) for one (bench/stages.py). Default: its own pool when pipelined; with
    # workers=0, the work pool (a unit test's manual pool runs both).
    answer_pool: Executor | None = None
    # On by default. It was off for a while: the clean-clone `make test` at 3285f15 failed 3 tests
    # (pymesos saw TASK_FINISHED without TASK_RUNNING; a UI test's task never RUNNING): a pod event
    # seen while the task's accept was still launching it was dropped (TaskSync.end_launch).
    pipelined: bool = True
    # Kinds the runner's reflectors fill (reflector.py: nodes, pods), synced before `seed` runs:
    # the seed does not LIST them again. Empty (unit tests): the seed lists every kind.
    reflected: frozenset[str] = frozenset()

    last_sweep: float = float("-inf")  # agent health and offer housekeeping, last run (pipelined)
    wake: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    # (framework, agent) -> (until, refused resources); in memory only, as in Mesos (lost on failover)
    filters: dict[tuple[str, str], tuple[float, Resources | None]] = field(default_factory=dict)
    # Framework heartbeats judged by the master's own (monotonic) clock: lifecycle.py feeds it.
    liveness: LeaseLiveness = field(default_factory=LeaseLiveness)
    # time.monotonic() at the loop's last turn, read by the liveness probe (probes.py).
    heartbeat: float = field(default_factory=time.monotonic)
    ready: threading.Event = field(default_factory=threading.Event)
    provenance: Provenance = field(default_factory=Provenance)  # what this master made (contract.py)
    took_over_at: float = 0.0  # time.monotonic() when this replica began to lead (take_over)
    _first_steps: int = 0  # steps after a takeover still to be timed and logged

    def __post_init__(self) -> None:
        self.pool = ThreadPoolExecutor(max(1, self.workers), thread_name_prefix="mesoskube-write")
        # Offer creates, round-robin by framework (fairqueue.py): a framework's first offer does not
        # wait behind another's hundreds.
        self.offer_pool = FairQueue(max(1, self.workers // 2), "mesoskube-offer") if self.workers else None
        # Task status patches, off the step (statuswrites.py): launches never wait behind them.
        self.status_pool = (
            ThreadPoolExecutor(max(1, self.workers // 2), thread_name_prefix="mesoskube-status")
            if self.workers and self.status_off_step
            else None
        )
        if self.work_pool is None and self.pipelined and self.workers:
            self.work_pool = ThreadPoolExecutor(self.workers, thread_name_prefix="mesoskube-work")
        if self.answer_pool is None and self.work_pool is not None:
            self.answer_pool = (
                ThreadPoolExecutor(self.workers, thread_name_prefix="mesoskube-answer")
                if self.workers
                else self.work_pool
            )
        # The writes of one accept side by side (answers.py); never the pool the accept runs on.
        self.launch_pool = (
            ThreadPoolExecutor(self.workers, thread_name_prefix="mesoskube-launch") if self.workers else None
        )
        # The framework Lease LIST off the loop's thread (lifecycle.py), when pipelined.
        self.lease_pool = (
            ThreadPoolExecutor(1, thread_name_prefix="mesoskube-leases")
            if self.work_pool is not None and self.workers
            else None
        )
        # The LIST after a watch's re-list (relist.py), off the loop's thread.
        self.sweep_pool = (
            ThreadPoolExecutor(1, thread_name_prefix="mesoskube-sweep") if self.workers else None
        )
        self.ghosts = GhostSweep(
            self.writer, self.cache, self.clock, self.settings.namespace or None, pool=self.sweep_pool
        )
        self._in_flight_lock = threading.Lock()
        self._answers_in_flight: Counter[str] = Counter()  # framework key -> its answers being worked
        self.events = EventRecorder(self.writer, self.pool if self.workers else None)
        self.agent_matches = parse_selector(self.settings.agentSelector)
        self.allocator_config = AllocatorConfig(
            min_allocatable=self.settings.min_allocatable_resources(),
            sorter=self.settings.sorter,
            seed=self.settings.seed,
            max_offers_per_framework=self.settings.maxOffersPerFramework,
        )
        self.health = AgentHealth(
            self.settings.agentUnreachableTimeout,
            on_unreachable=lambda a, s: log.warning(
                "agent %s NotReady for %.0fs: its tasks are unreachable", a, s
            ),
        )
        self.task_queue = WorkQueue(self.clock, on_ready=self.wake.set)
        self.answer_queue = WorkQueue(self.clock, on_ready=self.wake.set)
        self.framework_queue = WorkQueue(self.clock, on_ready=self.wake.set)
        self.tasks = TaskSync(
            self.writer,
            self.cache,
            self.settings,
            self.events,
            self.health,
            self.task_queue,
            self.dispatch_queue,
            self.request_allocation,
            self.provenance,
            status_pool=self.status_pool,
        )
        self.sync_tasks, self.sync_task, self.check_agents = (
            self.tasks.sync_tasks,
            self.tasks.sync_task,
            self.tasks.check_agents,
        )
        self.offers = OfferHousekeeping(
            self.writer,
            self.cache,
            self.clock,
            self.settings,
            self.agent_matches,
            self.events,
            self._run_all,
            self.request_allocation,
        )
        self.rescind_offers = self.offers.rescind_offers
        self.housekeep_offers = self.offers.housekeep_offers
        self.answers = AnswerHandling(
            self.writer,
            self.cache,
            self.clock,
            self.settings,
            self.events,
            self.answer_queue,
            self.tasks,
            self.filters,
            self.allocator_config.min_allocatable,
            self.dispatch_answers,
            self.request_allocation,
            self._run_all,
            self.provenance,
            fan_out=self._fan_out,
        )
        self.process_answers = self.answers.process_answers
        self.handle_answer = self.answers.handle_answer
        self.offer_deleted = self.answers.offer_deleted
        self.allocation = AllocationCycle(
            self.writer,
            self.cache,
            self.settings,
            self.agent_matches,
            self.allocator_config,
            self.filters,
            self.answers.apply_late_declines,
            self._run_all,
            self.provenance,
            wake=self.wake.set,
            offer_pool=self.offer_pool,
        )
        self.snapshot, self.allocate = self.allocation.snapshot, self.allocation.allocate
        self.lifecycle = FrameworkLifecycle(
            self.writer,
            self.cache,
            self.settings,
            self.events,
            self.framework_queue,
            self.filters,
            self.rescind_offers,
            self.offers.remove_framework_offers,
            lambda keys: [self.task_queue.add(k) for k in keys],
            self.request_allocation,
            self._run_all,
            self.liveness,
            self.monotonic,
            accepts_in_flight=self.accepts_in_flight,
            lease_pool=self.lease_pool,
            wake=self.wake.set,
        )
        self.poll_leases = self.lifecycle.poll_leases
        self.reconcile_frameworks = self.lifecycle.reconcile_frameworks
        self.status = StatusPublisher(
            self.writer, self.cache, self.settings, self.allocation.cluster_total, self._run_all
        )

    # ------------------------------------------------------------------ signals from handlers

    def mark_task(self, key: str) -> None:
        self.task_queue.add(key)

    def mark_framework(self, key: str) -> None:
        self.framework_queue.add(key)

    def mark_answered(self, key: str) -> None:
        self.answer_queue.add(key)

    def agent_removed(self, agent: str) -> None:
        """Tasks on a removed node are LOST; their pods are deleted (no kubelet will ever report them)."""
        with self.cache.lock:
            keys = [
                k for k, t in self.cache.tasks.items() if t["spec"]["agent"] == agent and not is_terminal(t)
            ]
        self.health.forget(agent)
        for k in keys:
            self.task_queue.add(k)
        self.request_allocation()

    def task_deleted(self, key: str) -> None:
        self.tasks.forget(key)

    def relisted(self, kind: str) -> None:
        """A watch of `kind` is listing again (after a 410): what it misses is swept (relist.py)."""
        self.ghosts.relisted(kind)
        self.wake.set()

    # The task part's memos, read by the accept path and by tests.
    @property
    def accepted_at(self) -> dict[str, float]:
        return self.tasks.accepted_at

    @property
    def launched(self) -> set[str]:
        return self.tasks.launched

    @property
    def killing(self) -> set[str]:
        return self.tasks.killing

    def request_allocation(self, agents: Iterable[str] | None = None, prompt: bool = False) -> None:
        """Ask for an allocation: over `agents` only (resources freed there), or over all of them;
        `prompt` when a framework asked for offers (allocation_gap says why it matters)."""
        self.allocation.request(agents, prompt)

    # The allocation part's state, read by the loop and by tests.
    @property
    def processed_declines(self) -> dict[str, float]:
        return self.answers.processed_declines

    @property
    def late_declines(self) -> list[dict]:
        return self.answers.late_declines

    @property
    def cycle(self) -> int:
        return self.allocation.cycle

    @property
    def sweeps(self) -> int:
        return self.allocation.sweeps

    @property
    def last_cycle(self):
        return self.allocation.last_cycle

    # ------------------------------------------------------------------ loop

    def seed(self) -> None:
        """LIST everything once before the first allocation, so a restarted master never offers
        resources that are already offered or launched."""
        ns = self.settings.namespace or None
        w = self.writer
        if "nodes" not in self.reflected:
            for node in w.list_nodes():  # type: ignore[attr-defined]
                self.cache.upsert_node(node)
        if "pods" not in self.reflected:
            for pod in w.list_pods():  # type: ignore[attr-defined]
                self.cache.upsert_pod(pod, ours=is_task_pod(pod, self.settings.schedulerName))
        for store in ("frameworks", "offers", "tasks"):
            for obj in w.list(store, ns):  # type: ignore[attr-defined]
                self.cache.upsert(store, obj)
                if store == "offers" or (store == "tasks" and made_by_master(obj)):
                    self.provenance.made(obj)  # an earlier master's
        for obj in w.list_roles():  # type: ignore[attr-defined]
            self.cache.upsert("roles", obj)
        self.ghosts.after_seed(k for k in WATCHED_KINDS if k not in self.reflected)
        self.mark_all()
        self.poll_leases(force=True)
        self.ready.set()

    def _look_at_released_tasks(self) -> None:
        """Tasks whose Offer went: a framework's own one that no accept launched is refused now
        (tasksync: it waited inside its Offer for the accept naming it)."""
        with self.cache.lock:
            released = self.cache.holdings.take_released()
            waiting = [
                k for k in released if (t := self.cache.tasks.get(k)) is not None and not made_by_master(t)
            ]
        for k in waiting:
            self.task_queue.add(k)

    def mark_all(self) -> None:
        """Look at every task, framework and answered offer on the next step (after the seed, and when a
        standby that kept its cache warm takes over)."""
        with self.cache.lock:
            tasks = list(self.cache.tasks)
            frameworks = list(self.cache.frameworks)
            answered = [k for k, o in self.cache.offers.items() if o["spec"].get("answer")]
            # A framework's own Tasks are not: one without a pod is checked against its Offer first.
            made = [*self.cache.offers.values(), *filter(made_by_master, self.cache.tasks.values())]
        # The Offers and the labelled Tasks held now were made by a master (where the chart's
        # policies are installed only the master creates them): an earlier leader's are this one's
        # to act on, whether the first LIST or the watch showed them (a warm standby's cache is newer
        # than its seed).
        for obj in made:
            if obj["metadata"].get("uid"):
                self.provenance.made(obj)
        for k in tasks:
            self.task_queue.add(k)
        for k in frameworks:
            self.framework_queue.add(k)
        for k in answered:
            self.answer_queue.add(k)
        self.request_allocation()

    def take_over(self) -> None:
        """This replica leads now, its cache warm: everything the last leader left is looked at on
        the next step, and one allocation cycle runs at once, before that backlog (the framework
        gets offers without waiting for the statuses and accepts the last leader left). The cycle is
        safe before them: unprocessed answers still hold their resources through their Outstanding
        offers, Tasks without a pod through their Tasks; only refusal filters are gone, as when a
        Mesos master fails over."""
        self.took_over_at = time.monotonic()
        self.provenance.trust_made_before(self.clock())
        self._first_steps = 3
        self.allocation.log_first_offer = True
        self.mark_all()
        self.allocation.allocate(self.clock())

    def run(self) -> None:
        """Seed, retrying the start-up LIST, then loop (one replica without election; the runner
        seeds and loops itself, around leadership)."""
        while not self.stopping.is_set():
            try:
                self.seed()
                break
            except Exception:  # the API server may not answer yet: keep trying, never die silently
                log.exception("initial LIST failed; retrying")
                self.stopping.wait(1.0)
        self.loop()

    def loop(self) -> None:
        """The steps, until stop(); `heartbeat` (monotonic) marks each turn for the liveness probe."""
        while not self.stopping.is_set():
            self.heartbeat = time.monotonic()
            self.wake.wait(timeout=self.next_wake_in())
            self.wake.clear()
            if self.stopping.is_set():
                break
            try:
                self.step()
            except Exception:  # queue work never raises here; this guards the loop's own code
                log.exception("engine step failed; retrying next step")
                self.stopping.wait(0.2)
        pools = [
            self.work_pool,
            self.answer_pool if self.answer_pool is not self.work_pool else None,
            self.launch_pool,
            self.lease_pool,
            self.offer_pool,
            self.status_pool,
            self.sweep_pool,
        ]
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)

    def next_wake_in(self) -> float:
        now = self.clock()
        a = self.allocation
        allocation = a.last_full_allocation + self.settings.allocationInterval - now
        if a.allocation_requested:
            allocation = min(allocation, a.last_allocation + self.allocation_gap - now)
        waits = [max(allocation, a.held_until - now), STATUS_INTERVAL]  # held: Offer creates failing
        if (relisted := self.ghosts.next_due_in(now)) is not None:
            waits.append(relisted)
        for q in (self.task_queue, self.answer_queue, self.framework_queue):
            if (w := q.next_ready_in()) is not None:
                waits.append(w)
        return max(0.0, min(waits))

    def publish_status(self, now: float) -> None:
        self.status.publish_status(now)

    def run_status(self) -> None:
        """Status, metrics and task retention on their own clock: a long engine step (a large accept
        at a low client QPS) must not freeze what `kubectl get frameworks` and dashboards show."""
        self.ready.wait()
        while not self.stopping.wait(STATUS_INTERVAL):
            try:
                self.status.publish_status(self.clock())
            except Exception:
                if self.stopping.is_set():  # the write pool shuts down with the engine
                    return
                log.exception("publishing status failed; retrying in %.0fs", STATUS_INTERVAL)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def step(self) -> None:
        started = time.perf_counter()
        try:
            self._step()
        finally:
            trace.mark("step", f"{time.perf_counter() - started:.6f}@{started:.6f}")

    def _step(self) -> None:
        now = self.clock()
        timed = self._first_steps > 0
        marks: list[tuple[str, float]] = [("", time.perf_counter())] if timed else []

        def mark(stage: str) -> None:
            if timed:
                marks.append((stage, time.perf_counter()))

        self.poll_leases()
        self.ghosts.sweep_due(now)
        mark("leases")
        self.reconcile_frameworks(now)
        mark("frameworks")
        self.process_answers(now)
        self._look_at_released_tasks()
        mark("answers")
        sweep = self.work_pool is None or now - self.last_sweep >= PIPELINED_SWEEP_GAP
        if sweep:
            self.last_sweep = now
            self.check_agents(now)
        self.sync_tasks(now)
        mark("tasks")
        if sweep:
            self.housekeep_offers(now)
        mark("offers")
        # The interval's sweep is due by the last sweep, whatever event-triggered cycles ran since.
        a = self.allocation
        due = now - a.last_full_allocation >= self.settings.allocationInterval
        if due or (a.allocation_requested and now - a.last_allocation >= self.allocation_gap):
            a.allocate(now)
        mark("allocation")
        if timed:
            self._first_steps -= 1
            log.info(
                "step %.3fs after taking over: %s",
                time.monotonic() - self.took_over_at,
                ", ".join(f"{s} {t - marks[i][1]:.3f}s" for i, (s, t) in enumerate(marks[1:])),
            )

    @property
    def allocation_gap(self) -> float:
        """The least time between event-triggered allocation cycles (PIPELINED_SWEEP_GAP says why).
        A framework asking for offers (a subscription, a revive: rare, and the wait is what its user
        sees as time to the first offer) waits only MIN_ALLOCATION_GAP: a second framework that
        subscribed within 0.2 s of a cycle waited up to 0.2 s for its offers."""
        if self.work_pool is None or self.allocation.prompt_requested:
            return MIN_ALLOCATION_GAP
        return PIPELINED_SWEEP_GAP

    def process_queue(self, queue: WorkQueue, work: Callable[[Hashable], None]) -> None:
        """Run `work` for every ready key of `queue`, each key's outcome reported with `done`:
        ANY exception re-queues the key with backoff, so no work is lost to an unexpected error."""

        def one(key: Hashable) -> None:
            try:
                work(key)
            except Exception as e:
                failures = queue.failures(key)
                # One line per key's first failures, not a traceback per step during an outage.
                level = logging.WARNING if failures < 3 else logging.DEBUG
                what = f"{e.status} {e.reason}" if isinstance(e, ApiError) else f"{type(e).__name__}: {e}"
                log.log(level, "%s: %s (retry %d in %.2fs)", key, what, failures + 1, queue.backoff(failures))
                if not isinstance(e, ApiError):
                    log.debug("traceback of %s", key, exc_info=True)
                queue.done(key, e)
            else:
                queue.done(key)

        self._run_all(one, list(queue.drain()))

    def dispatch_queue(
        self,
        queue: WorkQueue,
        work: Callable[[Hashable], None],
        tag: Callable[[Hashable], str | None] | None = None,
        pool: Executor | None = None,
    ) -> None:
        """Like process_queue, but hand each ready key to `pool` (default: the work pool) and
        return at once (inline without one). `tag(key)` names the framework whose answer it is
        (accepts_in_flight)."""
        pool = pool or self.work_pool
        if pool is None:
            self.process_queue(queue, work)
            return
        for key in queue.drain():
            fw = tag(key) if tag else None
            if fw:
                with self._in_flight_lock:
                    self._answers_in_flight[fw] += 1
            try:
                pool.submit(self._work_one, queue, work, key, fw)
            except RuntimeError:  # the pool is shut down: the master is stopping; the key stays
                self._end_one(queue, key, fw, RuntimeError("master stopping"))
                return

    def _work_one(self, queue: WorkQueue, work: Callable[[Hashable], None], key: Hashable, fw) -> None:
        error: BaseException | None = None
        try:
            work(key)
        except Exception as e:
            error = e
            failures = queue.failures(key)
            level = logging.WARNING if failures < 3 else logging.DEBUG
            what = f"{e.status} {e.reason}" if isinstance(e, ApiError) else f"{type(e).__name__}: {e}"
            log.log(level, "%s: %s (retry %d in %.2fs)", key, what, failures + 1, queue.backoff(failures))
            if not isinstance(e, ApiError):
                log.debug("traceback of %s", key, exc_info=True)
        finally:
            self._end_one(queue, key, fw, error)

    def _end_one(self, queue: WorkQueue, key: Hashable, fw: str | None, error: BaseException | None) -> None:
        queue.done(key, error)
        if fw:
            with self._in_flight_lock:
                self._answers_in_flight[fw] -= 1
                if self._answers_in_flight[fw] <= 0:
                    del self._answers_in_flight[fw]
        # done() re-queued the key (added meanwhile) or put it in backoff: the loop, which may be
        # asleep until its next timer, must look at the queue again.
        if queue.next_ready_in() is not None:
            self.wake.set()

    def dispatch_answers(self, queue: WorkQueue, work: Callable[[Hashable], None]) -> None:
        def framework_of(key: Hashable) -> str | None:
            with self.cache.lock:
                offer = self.cache.offers.get(key)
            if offer is None:
                return None
            return f"{offer['metadata']['namespace']}/{offer['spec']['framework']}"

        self.dispatch_queue(queue, work, framework_of, self.answer_pool)

    def accepts_in_flight(self, fw_key: str) -> bool:
        """Whether an answer of this framework is being worked (its Tasks may not be in the cache)."""
        with self._in_flight_lock:
            return self._answers_in_flight.get(fw_key, 0) > 0

    def _fan_out(self, fn: Callable, items: Iterable) -> list:
        items = list(items)
        if self.launch_pool is None or len(items) < 2:
            return [fn(i) for i in items]
        return list(self.launch_pool.map(fn, items))

    def _run_all(self, fn: Callable, items: Iterable) -> list:
        if not self.workers:
            return [fn(i) for i in items]
        return list(self.pool.map(fn, items))
