"""bench/compare_modes_real.py's figures from a run's task intervals and polled executors (pure)."""

from __future__ import annotations

import pytest

from bench.compare_modes_real import measure


def test_held_busy_idle_gap_and_executor_latencies_add_up():
    # Submitted at 100. Executor e1 (2 cores) created 101, bound 101.5, running 103; held 102..120.
    # Job 1: two 2 s tasks on e1 at 105; a gap 107..115; job 2: one 3 s task at 115.
    app = {
        "app_id": "spark-1",
        "context": 104.0,
        "jobs": [
            {"start": 104.5, "end": 107.0, "intervals": [[0, "e1", 105.0, 107.0], [1, "e1", 105.0, 107.0]]},
            {"start": 115.0, "end": 118.0, "intervals": [[0, "e1", 115.0, 118.0]]},
        ],
    }
    samples = [(100.0, 0, 0.0), (102.0, 1, 0.5), (120.0, 0, 0.0)]
    pods = {"e1": {"created": 101.0, "bound": 101.5, "running": 103.0}}
    r = measure("coarse", app, samples, pods, executor_cores=2, submitted=100.0)
    assert r["makespan_s"] == 18.0  # submit -> last task end
    assert r["driver_start_s"] == 4.0
    # Held 2 cores 102..118 = 32 core-s; busy 2 x 2 + 3 = 7 core-s; over 18 s.
    assert r["mean_cores_held"] == pytest.approx(32 / 18, abs=1e-3)
    assert r["mean_cores_busy"] == pytest.approx(7 / 18, abs=1e-3)
    assert r["mean_idle_cores_held"] == pytest.approx(25 / 18, abs=1e-3)
    assert r["utilisation"] == pytest.approx(7 / 32, abs=1e-4)
    assert r["cores_held_between_jobs_mean"] == 2.0 and r["between_jobs_s"] == 8.0
    lat = r["executor_start_latency_s"]
    assert lat["bound"]["p50"] == 0.5 and lat["running"]["p50"] == 2.0 and lat["first_task"]["p50"] == 4.0
    assert r["executors_launched"] == 1 and r["peak_cores_held"] == 2
    assert r["timeline"][0] == (0.0, 0.0, 0.0) and r["timeline"][10] == (5.0, 2, 2)
