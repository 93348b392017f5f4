"""The framework contract, where the master itself must enforce it (pure checks plus one writer).

The API server enforces most of it (CEL rules in the CRDs, the chart's ValidatingAdmissionPolicies);
what is here covers a cluster without those policies: an answer whose tasks carry fields the model
does not know is refused on the Offer, naming them, and launches nothing.
"""

from __future__ import annotations

import logging

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from mesoskube.api.models import OfferAnswer, OfferPhase
from mesoskube.master.cache import format_time, parse_time

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


def refuse_invalid_answer(engine, offer: dict, message: str) -> None:
    """Close the offer as Invalid (deleted after offerRetention like a rescinded one); nothing launches."""
    ns, name = offer["metadata"]["namespace"], offer["metadata"]["name"]
    msg = f"answer refused, nothing launched: {message}"
    try:
        body = engine.kube.patch_status(
            "offers",
            ns,
            name,
            {
                "status": {
                    "phase": OfferPhase.INVALID.value,
                    "reason": "REASON_INVALID_ANSWER",
                    "message": msg,
                    "answerRefused": True,
                    "closedAt": format_time(engine.clock()),
                }
            },
        )
    except ApiException as e:
        if e.status == 404:
            return
        raise
    engine.cache.upsert("offers", body)
    engine.events.warning(body, "AnswerRefused", msg)
    log.info("offer %s/%s: %s", ns, name, msg)


def closed_at(offer: dict, now: float) -> float:
    """When a closed offer closed. One closed by hand (a status written without the master's
    closedAt) counts from its creation, so offerRetention still removes it."""
    status = offer.get("status") or {}
    return parse_time(status.get("closedAt")) or parse_time(offer["metadata"].get("creationTimestamp")) or now
