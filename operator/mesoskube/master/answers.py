"""Answered offers: an accept becomes Tasks and Pods (all or none, rolled back on failure), a
decline a refusal filter; declined offers are deleted in bulk; an accept whose Offer was deleted
before the master processed it becomes TASK_LOST Tasks, so the framework hears of it.

A part with declared dependencies: the writer, the cache, the clock, the settings, its work
queue, the refusal filters (shared with the allocation part) and the task part (pods follow their
Tasks at once); the marks of processed answers are its own.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mesoskube import metrics
from mesoskube.api.models import DEFAULT_ROLE, AnswerType, FrameworkPhase, OfferAnswer, OfferPhase, TaskState
from mesoskube.master import LABEL_MASTER_MADE, LABEL_REFUSED, LABEL_TASK_ID, trace
from mesoskube.master.builders import task_manifest
from mesoskube.master.cache import Cache, format_time, key_of, parse_time, resource_version
from mesoskube.master.contract import Provenance, ignore_foreign_offer, parse_answer, refuse_invalid_answer
from mesoskube.master.events import EventRecorder
from mesoskube.master.failurelog import FailureLog
from mesoskube.master.objects import framework_key, is_terminal, ns_name, offer_phase, task_state
from mesoskube.master.tasksync import TaskSync
from mesoskube.master.validation import check_accept, check_named, task_info_of
from mesoskube.master.workqueue import WorkQueue
from mesoskube.master.writer import ApiError, Writer, delete_quietly
from mesoskube.resources import Resources
from mesoskube.settings import Settings

log = logging.getLogger("mesoskube.master")

STALE_MARK = 60.0
TORN_DOWN = FrameworkPhase.TORN_DOWN.value
# Declined and still outstanding: a decline of a rescinded or expired offer was refused and stays
# visible for offerRetention like its offer.
SWEEP_SELECTOR = (
    f"spec.answer.type={AnswerType.DECLINE.value},"
    f"status.phase!={OfferPhase.RESCINDED.value},status.phase!={OfferPhase.EXPIRED.value}"
)


@dataclass
class AnswerHandling:
    writer: Writer
    cache: Cache
    clock: Callable[[], float]
    settings: Settings
    events: EventRecorder
    queue: WorkQueue
    tasks: TaskSync
    filters: dict  # the allocation part's refusal filters, shared
    min_allocatable: tuple[Resources, ...]
    process_queue: Callable[[WorkQueue, Callable], None]
    request_allocation: Callable[[Iterable[str] | None], None]
    run_all: Callable[[Callable, Iterable], list]
    provenance: Provenance  # what this master made: only those Offers are acted on (contract.py)
    # The writes of one accept side by side (its Task creates, then its pod creates), so a task's
    # launch waits for its own writes, not for the accept's others one after another. A pool of
    # its own: the accept itself runs on a worker of the engine's. Default: one after another.
    fan_out: Callable[[Callable, Iterable], list] = lambda fn, items: [fn(i) for i in items]
    # Declines are deleted in bulk: which were processed (and when), which namespaces to sweep, and
    # declines a sweep removed before they were processed; accepts whose Offer went first.
    processed_declines: dict[str, float] = field(default_factory=dict)
    processed_accepts: dict[str, float] = field(default_factory=dict)
    sweep: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # namespace -> offer keys
    bulk_delete: bool = True  # off when the API server or RBAC refuses the field-selected delete
    late_declines: list[dict] = field(default_factory=list)
    lost_accepts: list[dict] = field(default_factory=list)
    # Accepts check and reserve task names under this lock, so two accepts in one step naming
    # the same task cannot both pass.
    launch_lock: threading.Lock = field(default_factory=threading.Lock)
    dirty_lock: threading.Lock = field(default_factory=threading.Lock)
    failures: FailureLog = field(default_factory=lambda: FailureLog(log))

    def process_answers(self, now: float) -> None:
        self._apply_lost_accepts(now)

        def work(key: str) -> None:
            with self.cache.lock:
                offer = self.cache.offers.get(key)
            if offer is not None and offer["spec"].get("answer"):
                self.handle_answer(key, offer, now)

        self.process_queue(self.queue, work)
        self.sweep_declined_offers()

    def sweep_declined_offers(self) -> None:
        """Delete every declined offer of a namespace with one request (a field selector on the
        answer). It may catch declines this step has not processed yet: their DELETED events come
        back through `offer_deleted`, which applies their filters before the next snapshot."""
        now = self.clock()
        with self.dirty_lock:
            sweep, self.sweep = self.sweep, defaultdict(set)
            # A DELETED event that overtook the processing leaves its mark behind: forget it later.
            for marks in (self.processed_declines, self.processed_accepts):
                for key in [k for k, t in marks.items() if now - t > STALE_MARK]:
                    del marks[key]
        for ns, keys in sweep.items():
            if self.bulk_delete:
                try:
                    self.writer.delete_collection("offers", ns, SWEEP_SELECTOR)
                    self.failures.succeeded("declined-offer sweeps")
                    continue
                except ApiError as e:
                    if e.status not in (400, 403, 404, 405):
                        self.failures.failed(
                            "declined-offer sweeps", "deleting declined offers in %s failed: %s", ns, e.reason
                        )
                        with self.dirty_lock:
                            self.sweep[ns] |= keys
                        continue
                    # Kubernetes < 1.31 has no field selectors on custom resources; an older RBAC
                    # role may lack deletecollection. Delete one by one from now on.
                    log.warning("bulk delete of declined offers refused (%s); deleting one by one", e.reason)
                    self.bulk_delete = False
            self.run_all(lambda k: delete_quietly(self.writer, "offers", *ns_name(k)), keys)

    def offer_deleted(self, key: str, body: dict) -> None:
        """Called by the watch handler before the offer leaves the cache. A decline removed by a
        sweep before this master processed it still sets its filter (else its agent would be
        offered right back). An accept deleted before it was processed (by the framework, a
        garbage collector, a person) becomes TASK_LOST Tasks: the framework must hear of it."""
        answer = body["spec"].get("answer") or {}
        self.request_allocation([body["spec"]["agent"]])
        with self.dirty_lock:
            if self.processed_declines.pop(key, None) is not None:
                return
            if self.processed_accepts.pop(key, None) is not None:
                return
            if offer_phase(body) != OfferPhase.OUTSTANDING.value:
                return
            if answer.get("type") == AnswerType.DECLINE.value:
                self.late_declines.append(body)
            elif answer.get("type") == AnswerType.ACCEPT.value:
                self.lost_accepts.append(body)

    def _apply_lost_accepts(self, now: float) -> None:
        with self.dirty_lock:
            lost, self.lost_accepts = self.lost_accepts, []
        for offer in lost:
            try:
                self._lose_accept(offer)
            except Exception as e:
                log.warning("accept of deleted offer %s: %s; retrying", key_of(offer), e)
                with self.dirty_lock:
                    self.lost_accepts.append(offer)

    def _lose_accept(self, offer: dict) -> None:
        ns, spec = offer["metadata"]["namespace"], offer["spec"]
        fw_key = framework_key(ns, spec["framework"])
        with self.cache.lock:
            fw = self.cache.frameworks.get(fw_key)
        if fw is None:
            return
        answer = OfferAnswer.model_validate(spec["answer"])
        if answer.taskNames:  # the framework's own Tasks: with their Offer gone they are refused
            self._look_again(ns, answer.taskNames)
            return
        msg = f"offer {offer['metadata']['name']} was deleted before the master processed its accept"
        for t in answer.tasks:
            if self.cache.tasks.get(f"{ns}/{t.name}") is not None:
                continue  # launched (before a restart) or a name in use: not this accept's to report
            self._error_task(
                ns,
                t,
                spec,
                fw["metadata"]["uid"],
                offer["metadata"]["name"],
                msg,
                TaskState.LOST,
                "REASON_INVALID_OFFERS",
            )

    def apply_late_declines(self, now: float) -> None:
        with self.dirty_lock:
            late, self.late_declines = self.late_declines, []
        for offer in late:
            spec = offer["spec"]
            fw_key = framework_key(offer["metadata"]["namespace"], spec["framework"])
            answer = OfferAnswer.model_validate(spec["answer"])
            refuse = self.refuse_seconds(answer, fw_key)
            metrics.offers.labels(event="declined").inc()
            self._filter(fw_key, spec["agent"], now + refuse, Resources.from_mapping(spec["resources"]))

    def handle_answer(self, key: str, offer: dict, now: float) -> None:
        trace.mark("answer-start", key)
        ns, name = ns_name(key)
        spec, status = offer["spec"], offer.get("status") or {}
        if not self.provenance.trusted(offer, key):
            ignore_foreign_offer(self.writer, self.cache, self.events, self.clock, offer)
            return
        answer = parse_answer(spec["answer"])
        if isinstance(answer, str):
            refuse_invalid_answer(self.writer, self.cache, self.events, self.clock, offer, answer)
            return
        phase = offer_phase(offer)
        if phase != OfferPhase.OUTSTANDING.value:
            if not status.get("answerRefused"):
                msg = (
                    f"answer refused: the offer was {phase.lower()} before it was answered "
                    f"({status.get('reason') or 'no reason'}); wait for a new offer"
                )
                try:
                    self.writer.patch_status(
                        "offers", ns, name, {"status": {"answerRefused": True, "message": msg}}
                    )
                except ApiError as e:
                    if e.status == 404:
                        return
                    raise
                self.events.warning(offer, "AnswerRefused", msg)
            self._look_again(ns, answer.taskNames)
            return
        fw_key = framework_key(ns, spec["framework"])
        created = parse_time(offer["metadata"].get("creationTimestamp"))
        if created:
            metrics.offer_decision.observe(max(0.0, now - created))
        with self.cache.lock:
            fw = self.cache.frameworks.get(fw_key)
        refuse = self.refuse_seconds(answer, fw_key)
        if answer.type == AnswerType.DECLINE:
            metrics.offers.labels(event="declined").inc()
            self._filter(fw_key, spec["agent"], now + refuse, Resources.from_mapping(spec["resources"]))
            # Declined offers go in bulk (one DELETE per namespace per step): with one framework
            # declining most of a large cluster, deleting them one by one dominated the write budget.
            with self.dirty_lock:
                self.processed_declines[key] = now
                self.sweep[ns].add(key)
            with self.cache.lock:
                self.cache.pop("offers", key)
            self.request_allocation([spec["agent"]])
            return
        if answer.taskNames:
            used = self.launch_named(offer, answer, fw, now)  # raises while a pod create fails
        else:
            used = self.launch(
                offer, answer, fw, now
            )  # raises (and rolls back) if not every Task was created
        metrics.offers.labels(event="accepted").inc()
        leftover = Resources.from_mapping(spec["resources"]) - used
        if any(leftover.contains(m) for m in self.min_allocatable):
            self._filter(fw_key, spec["agent"], now + refuse, leftover)
        with self.dirty_lock:
            self.processed_accepts[key] = now
        delete_quietly(self.writer, "offers", ns, name)
        trace.mark("answer-done", key)
        with self.cache.lock:
            self.cache.pop("offers", key)
        self.request_allocation([spec["agent"]])

    def refuse_seconds(self, answer: OfferAnswer, fw_key: str) -> float:
        """The answer's filter, else the framework's defaultFilters, else the master's setting."""
        if answer.filters is not None and answer.filters.refuseSeconds is not None:
            return answer.filters.refuseSeconds
        with self.cache.lock:
            fw = self.cache.frameworks.get(fw_key) or {}
        defaults = (fw.get("spec") or {}).get("defaultFilters") or {}
        if defaults.get("refuseSeconds") is not None:
            return float(defaults["refuseSeconds"])
        return self.settings.defaultRefuseSeconds

    def _filter(self, fw_key: str, agent: str, until: float, refused: Resources) -> None:
        if until > self.clock():
            self.filters[(fw_key, agent)] = (until, refused)

    def launch(self, offer: dict, answer: OfferAnswer, fw: dict | None, now: float) -> Resources:
        """Create every Task of the accept, or none: names are checked and reserved in the cache
        (assumed) under one lock, so concurrent accepts cannot both claim a name; if a create
        fails, the Tasks created so far are deleted again and the error goes to the work queue,
        which retries the whole accept. Pods follow each Task at once."""
        ns, spec = offer["metadata"]["namespace"], offer["spec"]
        offer_name = offer["metadata"]["name"]
        if not self._launches_for(fw, offer):
            return Resources()
        assert fw is not None
        fw_uid = fw["metadata"]["uid"]
        with self.launch_lock, self.cache.lock:
            existing = {k.split("/", 1)[1]: t for k, t in self.cache.tasks.items() if k.startswith(ns + "/")}
            # A restarted master (or a retry) may see an accept it half-processed: its own tasks
            # are not conflicts.
            in_flight = self._assumed(ns)  # other accepts' names, their creates under way
            already = {
                n for n, t in existing.items() if t["spec"].get("offer") == offer_name and n not in in_flight
            }
            todo = [t for t in answer.tasks if t.name not in already]
            verdict = check_accept(
                Resources.from_mapping(spec["resources"]), answer.tasks, set(existing) - already
            )
            if verdict.ok and not (adoption := self.tasks.adoption.check_adoptions(ns, todo)).ok:
                verdict = adoption
            manifests = []
            if verdict.ok:
                for t in todo:
                    m = self._task_manifest(ns, t, spec, fw_uid, offer_name)
                    # The cache's own copy: readers memoise parsed resources on cached bodies,
                    # which must not end up in the request.
                    self.cache.assume("tasks", copy.deepcopy(m))
                    manifests.append(m)
        if not verdict.ok:
            self.events.warning(fw, "TaskError", f"accept of offer {offer_name} refused: {verdict.message}")
            for t in todo:
                if t.name not in existing:
                    self._error_task(ns, t, spec, fw_uid, offer_name, verdict.message)
                else:  # the name belongs to another Task: the refusal is reported on a Task of its own
                    self._refuse_reused_name(ns, t, spec, fw_uid, offer, existing[t.name])
            return Resources()

        def create(m: dict) -> tuple[dict | None, BaseException | None]:
            try:
                return self._create_task(ns, m), None
            except Exception as e:
                return None, e

        # All or none: every create is tried (they run side by side), then the ones made are
        # deleted again if any failed, and the first error goes to the work queue (a retry).
        keys = [key_of(m) for m in manifests]
        self.tasks.begin_launch(keys)
        try:
            results = self.fan_out(create, manifests)
            created = [body for body, _ in results if body is not None]
            errors = [e for _, e in results if e is not None]
            if errors:
                self._roll_back(ns, manifests, created)
                raise errors[0]
            self._start(created, now)
        finally:
            self.tasks.end_launch(keys)
        return verdict.used

    @staticmethod
    def _launches_for(fw: dict | None, offer: dict) -> bool:
        """Whether an accept may launch for `fw`. TEARDOWN left the answered Offer alone (the answer
        is the framework's); worked after it, it must not launch for a framework being removed. As
        in Mesos: dropped."""
        if fw is None:
            return False
        if fw["metadata"].get("deletionTimestamp") or (fw.get("status") or {}).get("phase") == TORN_DOWN:
            meta = offer["metadata"]
            log.info(
                "offer %s/%s: its framework is torn down; the accept launches nothing",
                meta["namespace"],
                meta["name"],
            )
            return False
        return True

    def launch_named(self, offer: dict, answer: OfferAnswer, fw: dict | None, now: float) -> Resources:
        """An accept by name: the framework created the Tasks (each naming this Offer), and the
        master checks them against the offer, all or none, and creates their pods. The Offer is
        the record that survives a crash: it is deleted only once every named Task has its pod
        (a pod create that fails raises, and the whole answer is worked again), and the verdict
        is a function of the Offer and the Tasks' frozen specs, so a restarted master reaches the
        same one. A refusal makes every named Task TASK_ERROR, naming what was wrong; none gets a
        pod."""
        ns, spec = offer["metadata"]["namespace"], offer["spec"]
        offer_name = offer["metadata"]["name"]
        if not self._launches_for(fw, offer):
            return Resources()
        assert fw is not None
        named = {name: self._named_task(ns, name) for name in answer.taskNames}
        live = {n: t for n, t in named.items() if t is None or not is_terminal(t)}  # killed first: dropped
        tolerations = (fw.get("spec") or {}).get("tolerations")
        verdict = check_named(offer, fw["metadata"]["uid"], tolerations, live)
        bodies = [t for t in live.values() if t is not None]
        if verdict.ok:
            infos = [task_info_of(t) for t in bodies]
            verdict = check_accept(Resources.from_mapping(spec["resources"]), infos, set())
            if verdict.ok and not (adoption := self.tasks.adoption.check_adoptions(ns, infos)).ok:
                verdict = adoption
        if not verdict.ok:
            self.events.warning(fw, "TaskError", f"accept of offer {offer_name} refused: {verdict.message}")
            for body in bodies:
                self._refuse_named(body, verdict.message)
            return Resources()
        for body in bodies:
            self.provenance.made(body)  # checked against its Offer: this master's to launch from now on
        keys = [key_of(b) for b in bodies]
        self.tasks.begin_launch(keys)
        try:
            for body in bodies:
                self.tasks.accepted_at.setdefault(key_of(body), now)
            errors = [e for e in self.fan_out(lambda b: self._launch_pod(b, now), bodies) if e is not None]
            if errors:
                raise errors[0]
        finally:
            self.tasks.end_launch(keys)
        return verdict.used

    def _launch_pod(self, body: dict, now: float) -> BaseException | None:
        try:
            self.tasks.sync_task(key_of(body), body, now)
            return None
        except Exception as e:
            return e

    def _named_task(self, ns: str, name: str) -> dict | None:
        """The named Task: from the cache, else read (its watch event may not have come yet)."""
        key = f"{ns}/{name}"
        with self.cache.lock:
            body = self.cache.tasks.get(key)
        if body is not None:
            return body
        try:
            body = self.writer.get("tasks", ns, name)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        self.cache.upsert("tasks", body)
        return body

    def _refuse_named(self, task: dict, message: str) -> None:
        ns, name = task["metadata"]["namespace"], task["metadata"]["name"]
        status = {
            "state": TaskState.ERROR.value,
            "reason": "REASON_TASK_INVALID",
            "message": f"accept refused, nothing launched: {message}",
            "finishedAt": format_time(self.clock()),
        }
        try:
            body = self.writer.patch_status("tasks", ns, name, {"status": status})
        except ApiError as e:
            if e.status == 404:
                return
            raise
        self.cache.upsert("tasks", body)

    def _look_again(self, ns: str, names: Iterable[str]) -> None:
        for name in names:
            self.tasks.queue.add(f"{ns}/{name}")

    def _start(self, created: list[dict], now: float) -> None:
        """The accept's Tasks exist: into the cache, then their pods, side by side."""
        for body in created:
            k = key_of(body)
            self.tasks.accepted_at[k] = now
            self.cache.upsert("tasks", body)

        # A pod create that fails leaves its Task on the task queue, retried with backoff.
        def launch_pod(body: dict) -> None:
            k = key_of(body)
            try:
                self.tasks.sync_task(k, body, now)
            except Exception:
                self.tasks.queue.retry(k)  # back with backoff (a key this accept never took)

        self.fan_out(launch_pod, created)

    def _assumed(self, ns: str) -> set[str]:
        return {k.split("/", 1)[1] for k in self.cache.assumed["tasks"] if k.startswith(ns + "/")}

    def _roll_back(self, ns: str, manifests: list[dict], created: list[dict]) -> None:
        for body in created:
            try:
                delete_quietly(self.writer, "tasks", ns, body["metadata"]["name"])
            except Exception as e:  # the retry of the accept will see it as its own
                log.warning("rolling back task %s/%s: %s", ns, body["metadata"]["name"], e)
                self.cache.upsert("tasks", body)
                continue
            # Its ADDED may still be on the way: no newer than this, it must not bring it back.
            self.cache.delete("tasks", key_of(body), resource_version(body))
        for m in manifests:
            self.cache.forget("tasks", key_of(m))

    def _create_task(self, ns: str, manifest: dict) -> dict:
        key = key_of(manifest)
        self.provenance.expect(key)  # before the create: its watch event may come first
        try:
            body = self.writer.create("tasks", ns, manifest)
        except BaseException:
            self.provenance.abandon(key)
            raise
        self.provenance.made(body, key)
        trace.mark("task-created", key)
        return body

    def _task_manifest(self, ns: str, task, spec: dict, fw_uid: str, offer_name: str) -> dict:
        role = spec.get("role") or DEFAULT_ROLE
        with self.cache.lock:
            fw = self.cache.frameworks.get(framework_key(ns, spec["framework"])) or {}
        tolerations = (fw.get("spec") or {}).get("tolerations")
        m = task_manifest(task, spec["framework"], fw_uid, role, spec["agent"], offer_name, tolerations)
        m["metadata"]["namespace"] = ns
        m["metadata"]["labels"][LABEL_MASTER_MADE] = "true"
        return m

    def _refuse_reused_name(self, ns: str, task, spec: dict, fw_uid: str, offer: dict, holder: dict) -> None:
        """Mesos answers a duplicate task id with TASK_ERROR for that id. The name is taken here, so
        the TASK_ERROR is a Task of its own (a name derived from the offer's uid, the id in the label
        mesoskube.io/mesos-task-id), which the framework sees among its Tasks; nothing launches."""
        owner = holder["spec"].get("framework")
        held = task_state(holder) if (holder.get("status") or {}).get("state") else "not yet started"
        whose = "this framework" if owner == spec["framework"] else f"framework {owner}"
        message = (
            f"task id {task.name} is already used by Task {task.name} of {whose} ({held}); task ids "
            "are unique in a namespace, finished tasks included: launch it under another name"
        )
        digest = hashlib.sha1(f"{offer['metadata']['uid']}/{task.name}".encode()).hexdigest()[:10]
        name = f"{task.name[:40]}-dup-{digest}"
        self._error_task(
            ns, task, spec, fw_uid, offer["metadata"]["name"], message, name=name, task_id=task.name
        )

    def _error_task(
        self,
        ns: str,
        task,
        spec: dict,
        fw_uid: str,
        offer_name: str,
        message: str,
        state: TaskState = TaskState.ERROR,
        reason: str = "REASON_TASK_INVALID",
        name: str | None = None,
        task_id: str | None = None,
    ) -> None:
        manifest = self._task_manifest(ns, task, spec, fw_uid, offer_name)
        # Marked before the create: the Task's watch event may reach the task part before its
        # status is written, and it must not get a pod in between.
        manifest["metadata"]["labels"][LABEL_REFUSED] = "true"
        if name is not None:
            manifest["metadata"]["name"] = name
        if task_id is not None:
            manifest["metadata"]["labels"][LABEL_TASK_ID] = task_id
        try:
            self._create_task(ns, manifest)
        except ApiError as e:
            if e.status != 409:
                raise
            with self.cache.lock:
                held = self.cache.tasks.get(f"{ns}/{manifest['metadata']['name']}") or {}
            # Ours from an earlier try whose status write failed: write it now; else not ours.
            if LABEL_REFUSED not in (held.get("metadata", {}).get("labels") or {}) or task_state(held):
                return
        body = self.writer.patch_status(
            "tasks",
            ns,
            manifest["metadata"]["name"],
            {
                "status": {
                    "state": state.value,
                    "reason": reason,
                    "message": message,
                    "finishedAt": format_time(self.clock()),
                }
            },
        )
        self.cache.upsert("tasks", body)
        self.events.warning(body, state.value, f"{reason}: {message}")
