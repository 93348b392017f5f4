"""The framework contract, where the master itself must enforce it (pure checks plus one writer).

The API server enforces most of it (CEL rules in the CRDs, the chart's ValidatingAdmissionPolicies);
what is here covers a cluster without those policies: an answer whose tasks carry fields the model
does not know is refused on the Offer, naming them, and launches nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pydantic import ValidationError

from mesoskube.api.models import AnswerType, OfferAnswer, OfferPhase, TaskState
from mesoskube.master import LABEL_MASTER_MADE
from mesoskube.master.cache import Cache, format_time, parse_time
from mesoskube.master.events import EventRecorder
from mesoskube.master.writer import ApiError, Writer

log = logging.getLogger("mesoskube.master")


def answer_errors(error: ValidationError) -> str:
    """One line naming every offending field as a framework writes it (spec.answer.tasks[0].runSecs)."""
    parts = []
    for err in error.errors():
        path = "spec.answer"
        for step in err["loc"]:
            path += f"[{step}]" if isinstance(step, int) else f".{step}"
        what = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{path}: {what}")
    return "; ".join(parts)


def parse_answer(raw: dict) -> OfferAnswer | str:
    """The answer, or a message naming what is wrong with it."""
    try:
        return OfferAnswer.model_validate(raw)
    except ValidationError as e:
        return answer_errors(e)


def _mark(
    cache: Cache, events: EventRecorder, store: str, write: Callable[[], dict], event: tuple[str, str]
) -> bool:
    """Write the status saying why the master refuses an object (`write`: the patch, a literal
    call so that the RBAC derived from the code sees its resource), keep the cache in step, tell
    the framework with an Event; False when the object is gone meanwhile."""
    try:
        body = write()
    except ApiError as e:
        if e.status == 404:
            return False
        raise
    cache.upsert(store, body)
    events.warning(body, *event)
    return True


def refuse_invalid_answer(
    writer: Writer, cache: Cache, events: EventRecorder, clock: Callable[[], float], offer: dict, message: str
) -> None:
    """Close the offer as Invalid (deleted after offerRetention like a rescinded one); nothing launches."""
    msg = f"answer refused, nothing launched: {message}"
    status = {"phase": OfferPhase.INVALID.value, "reason": "REASON_INVALID_ANSWER", "message": msg,
              "answerRefused": True, "closedAt": format_time(clock())}  # fmt: skip
    ns, name = offer["metadata"]["namespace"], offer["metadata"]["name"]
    write = lambda: writer.patch_status("offers", ns, name, {"status": status})  # noqa: E731
    if _mark(cache, events, "offers", write, ("AnswerRefused", msg)):
        log.info("offer %s/%s: %s", ns, name, msg)


def closed_at(offer: dict, now: float) -> float:
    """When a closed offer closed. One closed by hand (a status written without the master's
    closedAt) counts from its creation, so offerRetention still removes it."""
    status = offer.get("status") or {}
    return parse_time(status.get("closedAt")) or parse_time(offer["metadata"].get("creationTimestamp")) or now


NOT_FROM_MASTER = "REASON_NOT_FROM_MASTER"
CLOCK_SKEW_ALLOWANCE = 5.0  # seconds between a replica's clock and the API server's, at most


class Provenance:
    """The Offers and Tasks this master made or checked, by uid: its own, those its first LIST found
    and, on a takeover, those created before it, which an earlier master made (only the master
    creates Offers, and Tasks labelled mesoskube.io/made-by-master, where the chart's policies are
    installed); and a framework's own Tasks once an accept naming them passed (answers.py).
    Anything else (an Offer or Task created by hand) is never acted on. A Task's key is recorded
    before its create call, so the watch event of a Task being created cannot be taken for a forgery."""

    def __init__(self) -> None:
        self._uids: set[str] = set()
        self._pending: set[str] = set()
        self._made_before = float("-inf")
        self._lock = threading.Lock()

    def trust_made_before(self, when: float) -> None:
        """A replica that begins to lead at `when` (its clock) trusts what was created before then
        as an earlier master's, as it trusts everything its cache holds then (Engine.mark_all):
        the old leader's last Offers and Tasks can reach its watch after the takeover.
        creationTimestamp is the API server's clock, in whole seconds: CLOCK_SKEW_ALLOWANCE more
        keeps a replica whose clock is behind from refusing them again."""
        with self._lock:
            self._made_before = max(self._made_before, when + CLOCK_SKEW_ALLOWANCE)

    def expect(self, key: str) -> None:
        with self._lock:
            self._pending.add(key)

    def made(self, body: dict, key: str | None = None) -> None:
        with self._lock:
            self._uids.add(body["metadata"]["uid"])
            if key is not None:
                self._pending.discard(key)

    def abandon(self, key: str) -> None:
        with self._lock:
            self._pending.discard(key)

    def trusted(self, body: dict, key: str | None = None, by_creation: bool = True) -> bool:
        """`by_creation` False: made before the takeover is no reason (a framework's own Task,
        trusted once checked against its Offer)."""
        with self._lock:
            if body["metadata"].get("uid") in self._uids or (key is not None and key in self._pending):
                return True
            made_before = self._made_before
        if not by_creation:
            return False
        created = parse_time(body["metadata"].get("creationTimestamp"))
        return created is not None and created <= made_before


def made_by_master(task: dict) -> bool:
    """A Task a master created (the chart's task-create policy keeps frameworks from the label)."""
    return (task["metadata"].get("labels") or {}).get(LABEL_MASTER_MADE) == "true"


def unlaunched(task: dict, offer: dict | None, partition_aware: bool) -> tuple[TaskState, str, str] | None:
    """A framework's own Task that no accept has launched yet: None while its Offer may still be
    accepted naming it (outstanding, of its framework and agent, unanswered or answered naming
    it); else the terminal state it gets (state, reason, message), and it never gets a pod. As in
    Mesos, a launch on an offer that is gone is TASK_DROPPED (partition-aware) or TASK_LOST."""
    spec, name = task["spec"], task["metadata"]["name"]
    offer_name = spec.get("offer")
    lost = TaskState.DROPPED if partition_aware else TaskState.LOST
    if not offer_name:
        return (
            TaskState.ERROR,
            NOT_FROM_MASTER,
            "not launched: a framework's Task must name its Offer (spec.offer)",
        )
    if offer is None:
        return (
            lost,
            "REASON_INVALID_OFFERS",
            f"not launched: offer {offer_name} is gone and no accept of it named this task",
        )
    ospec = offer["spec"]
    if (ospec.get("framework"), ospec.get("agent")) != (spec.get("framework"), spec.get("agent")):
        return (
            TaskState.ERROR,
            "REASON_TASK_INVALID",
            f"not launched: offer {offer_name} is for framework {ospec.get('framework')} on agent "
            f"{ospec.get('agent')}, not this task's {spec.get('framework')} on {spec.get('agent')}",
        )
    phase = (offer.get("status") or {}).get("phase") or OfferPhase.OUTSTANDING.value
    if phase != OfferPhase.OUTSTANDING.value:
        return (
            lost,
            "REASON_INVALID_OFFERS",
            f"not launched: offer {offer_name} was {phase.lower()} before an accept of it launched this task",
        )
    answer = ospec.get("answer") or {}
    if answer and not (
        answer.get("type") == AnswerType.ACCEPT.value and name in (answer.get("taskNames") or [])
    ):
        return (
            TaskState.ERROR,
            "REASON_TASK_INVALID",
            f"not launched: offer {offer_name} was answered without naming this task (spec.answer.taskNames)",
        )
    return None


def ignore_foreign_offer(
    writer: Writer, cache: Cache, events: EventRecorder, clock: Callable[[], float], offer: dict
) -> None:
    """An answered Offer the master did not make: closed as Invalid, its answer refused, saying
    why; nothing launches."""
    if (offer.get("status") or {}).get("reason") == NOT_FROM_MASTER:
        return
    msg = "ignored: this Offer was not made by the mesoskube master (offers are made only by it)"
    # answerRefused: the framework that answered must hear its tasks were not launched (the SDK
    # makes them TASK_LOST), or they stay in flight for it forever.
    status = {"phase": OfferPhase.INVALID.value, "reason": NOT_FROM_MASTER, "message": msg,
              "answerRefused": True, "closedAt": format_time(clock())}  # fmt: skip
    ns, name = offer["metadata"]["namespace"], offer["metadata"]["name"]
    write = lambda: writer.patch_status("offers", ns, name, {"status": status})  # noqa: E731
    if _mark(cache, events, "offers", write, ("OfferIgnored", msg)):
        log.warning("offer %s/%s ignored: not made by the master", ns, name)


def ignore_foreign_task(
    writer: Writer, cache: Cache, events: EventRecorder, clock: Callable[[], float], task: dict
) -> None:
    """A Task the master did not create from an accept: TASK_ERROR saying why; it gets no pod."""
    msg = "ignored: this Task was not created by the mesoskube master from an accepted offer"
    status = {"state": TaskState.ERROR.value, "reason": NOT_FROM_MASTER, "message": msg,
              "finishedAt": format_time(clock())}  # fmt: skip
    event = (TaskState.ERROR.value, f"{NOT_FROM_MASTER}: {msg}")
    ns, name = task["metadata"]["namespace"], task["metadata"]["name"]
    write = lambda: writer.patch_status("tasks", ns, name, {"status": status})  # noqa: E731
    if _mark(cache, events, "tasks", write, event):
        log.warning("task %s/%s ignored: not created by the master", ns, name)
