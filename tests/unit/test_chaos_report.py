"""make chaos groups the launches the master refused by cause, not by pod (bench/chaos.py)."""

from __future__ import annotations

from bench.chaos import refusal_kind


def test_refusals_of_two_pods_for_one_cause_count_as_one_kind() -> None:
    a = 'the API server refused the pod: Forbidden: pods "chaos-t00017" is forbidden: not yet ready'
    b = 'the API server refused the pod: Forbidden: pods "chaos-t01234" is forbidden: not yet ready'
    assert refusal_kind(a) == refusal_kind(b)
    assert "not yet ready" in refusal_kind(a) and "t00017" not in refusal_kind(a)


def test_refusals_for_different_causes_stay_apart() -> None:
    a = 'Forbidden: pods "x" is forbidden: error looking up service account ns/default'
    b = 'Invalid: Pod "x" is invalid: spec.containers[0].image: Required value'
    assert refusal_kind(a) != refusal_kind(b)
