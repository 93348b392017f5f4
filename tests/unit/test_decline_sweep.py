"""Declined offers are deleted in bulk; a decline a sweep removed before the master processed it
still sets its refusal filter. The engine's bookkeeping for that, without an API server."""

from __future__ import annotations

from mesoskube.master.answers import SWEEP_SELECTOR
from mesoskube.master.cache import Cache
from mesoskube.master.engine import Engine
from mesoskube.settings import Settings

NOW = 1000.0


def engine() -> Engine:
    cache = Cache()
    cache.upsert_node(
        {
            "metadata": {"name": "n1", "uid": "nu1", "resourceVersion": "1", "labels": {}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "8", "memory": "32Gi"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    )
    cache.upsert(
        "frameworks",
        {
            "metadata": {"name": "fw", "namespace": "ns", "uid": "fu", "resourceVersion": "1"},
            "spec": {"roles": ["*"], "defaultFilters": {"refuseSeconds": 30}},
            "status": {"phase": "Subscribed"},
        },
    )
    return Engine(writer=None, settings=Settings(agentSelector=""), cache=cache, clock=lambda: NOW, workers=0)  # type: ignore[arg-type]


def declined(name: str = "o1", refuse: float | None = 7, phase: str | None = None) -> dict:
    answer: dict = {"type": "Decline"}
    if refuse is not None:
        answer["filters"] = {"refuseSeconds": refuse}
    body = {
        "metadata": {"name": name, "namespace": "ns", "uid": "ou", "resourceVersion": "2"},
        "spec": {"framework": "fw", "agent": "n1", "resources": {"cpus": 8, "mem": 32768}, "answer": answer},
    }
    if phase:
        body["status"] = {"phase": phase}
    return body


def filters(e: Engine) -> dict:
    return {(f.framework, f.agent): f.expires_at for f in e.snapshot(NOW).filters}


def test_a_decline_swept_before_it_was_processed_still_filters_its_agent() -> None:
    e = engine()
    e.offer_deleted("ns/o1", declined(refuse=7))
    assert filters(e) == {("ns/fw", "n1"): NOW + 7}


def test_a_late_decline_without_filters_uses_the_framework_default_refuse_seconds() -> None:
    e = engine()
    e.offer_deleted("ns/o1", declined(refuse=None))
    assert filters(e) == {("ns/fw", "n1"): NOW + 30}


def test_a_processed_decline_is_not_applied_twice_and_its_mark_is_cleared() -> None:
    e = engine()
    e.processed_declines["ns/o1"] = NOW
    e.offer_deleted("ns/o1", declined())
    assert e.late_declines == [] and e.processed_declines == {}


def test_offers_deleted_for_other_reasons_set_no_filter() -> None:
    e = engine()
    e.offer_deleted("ns/o1", declined(phase="Rescinded"))  # its answer was refused
    unanswered = declined("o2")
    del unanswered["spec"]["answer"]
    e.offer_deleted("ns/o2", unanswered)
    assert filters(e) == {}


def test_the_sweep_selects_outstanding_declines_only() -> None:
    assert SWEEP_SELECTOR == "spec.answer.type=Decline,status.phase!=Rescinded,status.phase!=Expired"
