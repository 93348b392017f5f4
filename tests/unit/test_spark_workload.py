"""The emulated workload: stage ordering, seeded durations, retries, latencies (injected clock)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from mesoskube.frameworks.spark.workload import EmulatedWorkload, WorkloadFailed, WorkloadRun


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def wl(**kw) -> EmulatedWorkload:
    return EmulatedWorkload.model_validate(
        {"stages": [{"tasks": 3, "seconds": 2.0}, {"tasks": 2, "seconds": 1.0}], **kw}
    )


def test_a_stage_is_ready_only_when_the_previous_one_is_done():
    clock = Clock()
    run = WorkloadRun(wl(), clock)
    run.start()
    assert [t.key for t in run.pending] == ["s0-t0", "s0-t1", "s0-t2"]
    got = run.take()
    assert len(got) == 3 and not run.pending
    for t in got:
        run.started(t.id)
    assert not run.finished(got[0].id) and not run.finished(got[1].id)
    assert not run.pending and run.stage == 0  # stage 1 waits for the last task of stage 0
    clock.t = 105.0
    assert run.finished(got[2].id)
    assert run.stage == 1 and [t.key for t in run.pending] == ["s1-t0", "s1-t1"]
    assert all(t.ready_at == 105.0 for t in run.pending)
    for t in run.take():
        run.started(t.id)
        run.finished(t.id)
    assert run.done and run.done_tasks == 5 and run.makespan() == 5.0
    assert run.stage_times == [(100.0, 105.0), (105.0, 105.0)]


def test_latency_is_ready_to_started():
    clock = Clock()
    run = WorkloadRun(wl(), clock)
    run.start()
    (t,) = run.take(1)
    clock.t = 101.5
    run.started(t.id)
    assert run.latencies == [1.5]
    assert run.started(t.id) is None  # only the first start counts


def test_failures_retry_at_the_front_then_fail_the_app():
    clock = Clock()
    run = WorkloadRun(wl(), clock)
    run.start()
    (t,) = run.take(1)
    retry = run.failed(t.id)
    assert retry is not None and retry.attempt == 1 and run.pending[0] is retry and retry.id == "s0t0a1"
    for _ in range(2):
        (t,) = run.take(1)
        run.failed(t.id)
    (t,) = run.take(1)
    with pytest.raises(WorkloadFailed, match="s0-t0 failed 4 times"):
        run.failed(t.id)


def test_give_back_restores_order():
    run = WorkloadRun(wl(), Clock())
    run.start()
    taken = run.take(2)
    run.give_back(taken)
    assert [t.key for t in run.pending] == ["s0-t0", "s0-t1", "s0-t2"] and not run.in_flight


def test_durations_are_seeded_and_jitter_stays_in_bounds():
    a = wl(jitter=0.5, seed=3).durations()
    assert a == wl(jitter=0.5, seed=3).durations()
    assert a != wl(jitter=0.5, seed=4).durations()
    assert all(1.0 <= d <= 3.0 for d in a[0]) and all(0.5 <= d <= 1.5 for d in a[1])
    assert wl().durations() == [[2.0, 2.0, 2.0], [1.0, 1.0]]
    w = EmulatedWorkload.model_validate({"jitter": 0.5, "stages": [{"tasks": 2, "seconds": 4, "jitter": 0}]})
    assert w.durations() == [[4, 4]] and w.serial_seconds() == 8 and w.total_tasks == 2


def test_files_load_as_yaml_or_json_and_bad_ones_say_why(tmp_path):
    y = tmp_path / "w.yaml"
    y.write_text("name: etl\nstages:\n  - {tasks: 4, seconds: 1.5}\n")
    assert EmulatedWorkload.load(y).stages[0].tasks == 4
    j = tmp_path / "w.json"
    j.write_text(json.dumps({"stages": [{"tasks": 1, "seconds": 0}]}))
    assert EmulatedWorkload.load(j).total_tasks == 1
    with pytest.raises(ValidationError, match="tasks"):
        EmulatedWorkload.model_validate({"stages": [{"tasks": 0, "seconds": 1}]})
    with pytest.raises(ValidationError, match="stages"):
        EmulatedWorkload.model_validate({"stages": []})
