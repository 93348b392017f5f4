"""Answered offers: an accept becomes Tasks and Pods (all or none), a decline a refusal filter;
declined offers are deleted in bulk.

A mixin of the master's Engine (engine.py), which holds the state these methods share.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from kubernetes.client.exceptions import ApiException

from mesoskube import metrics
from mesoskube.api.models import DEFAULT_ROLE, AnswerType, OfferAnswer, OfferPhase, TaskState
from mesoskube.master.builders import task_manifest
from mesoskube.master.cache import format_time, key_of, parse_time
from mesoskube.master.contract import ignore_foreign_offer, parse_answer, refuse_invalid_answer
from mesoskube.master.objects import framework_key, ns_name, offer_phase
from mesoskube.master.validation import check_accept
from mesoskube.resources import Resources

log = logging.getLogger("mesoskube.master")

STALE_DECLINE_MARK = 60.0
# Declined and still outstanding: a decline of a rescinded or expired offer was refused and stays
# visible for offerRetention like its offer.
SWEEP_SELECTOR = (
    f"spec.answer.type={AnswerType.DECLINE.value},"
    f"status.phase!={OfferPhase.RESCINDED.value},status.phase!={OfferPhase.EXPIRED.value}"
)


class AnswerHandling:
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
            self._run_all(lambda k: self._delete_quietly("offers", *ns_name(k)), keys)

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
            fw_key = framework_key(offer["metadata"]["namespace"], spec["framework"])
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
        ns, name = ns_name(key)
        spec, status = offer["spec"], offer.get("status") or {}
        if not self.provenance.trusted(offer):
            ignore_foreign_offer(self, offer)
            return
        answer = parse_answer(spec["answer"])
        if isinstance(answer, str):
            refuse_invalid_answer(self, offer, answer)
            return
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
        fw_key = framework_key(ns, spec["framework"])
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
        with self.cache.lock:
            fw = self.cache.frameworks.get(framework_key(ns, spec["framework"])) or {}
        tolerations = (fw.get("spec") or {}).get("tolerations")
        manifest = task_manifest(
            task, spec["framework"], fw_uid, role, spec["agent"], offer_name, tolerations
        )
        key = f"{ns}/{task.name}"
        self.provenance.expect(key)  # before the create: its watch event may come first
        try:
            body = self.kube.create("tasks", ns, manifest)
        except ApiException:
            self.provenance.abandon(key)
            raise
        self.provenance.made(body, key)
        return body

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
